"""A scripted PushT expert that chooses each push by simulating candidates on a private simulator.

gym-pusht's contacts are frictionless and its space has `damping = 0` (pymunk keeps no velocity
between substeps), so the block moves only while the agent pushes it and every push has a
predictable, local effect. The expert therefore works in rounds: copy the current simulator state
into its own pymunk space, try a short push at each of a few contact points around the T's outline
and at a few depths, keep the push that removes the most pose error per step (travel included), walk
the agent around the block to that contact point, execute the push, and plan again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pymunk
import shapely
from pymunk.vec2d import Vec2d
from shapely.geometry.polygon import orient

with warnings.catch_warnings():
    # pygame (imported by gym-pusht) warns about pkg_resources; gym-pusht means to silence it but
    # filters the wrong category, and the warning would clutter every command line's error output.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    from gym_pusht.envs.pusht import PushTEnv

WORKSPACE_MARGIN = 24.0
"""Closest distance (px) the agent's centre can get to the border of the 512 x 512 arena (walls)."""
ARENA_SIZE = 512.0


class PlanningError(RuntimeError):
    """The expert has no push left to make: no contact point around the block is reachable.

    This happens once the block has been pressed against a wall and through it (the agent is
    kinematic, so it can squeeze the block out of the arena): that episode cannot go on, but the
    rest of a dataset can, so callers catch this error alone.
    """


@dataclass(frozen=True)
class ExpertConfig:
    """Planning knobs; the defaults are tuned for success within gym-pusht's 300-step limit."""

    push_depths: tuple[float, ...] = (4.0, 20.0, 100.0)
    """How far (px) past the contact point the agent is commanded; small depths give fine moves."""
    horizon: int = 5
    """Steps simulated per candidate push; the best prefix of them is executed."""
    contact_spacing: float = 25.0
    """Distance (px) between candidate contact points along each edge of the T."""
    approach_gap: float = 3.0
    """Gap (px) between the agent and the block's edge where a push starts."""
    clearance: float = 2.0
    """Gap (px) the agent keeps from the block while travelling to a contact point."""
    waypoint_offset: float = 12.0
    """Extra distance (px) of the travel waypoints from the block, beyond the clearance."""
    arrive_tolerance: float = 5.0
    """Distance (px) to a push's start point at which the push begins."""
    waypoint_reached: float = 20.0
    """Distance (px) at which a travelling agent heads for the waypoint after the next one."""
    travel_gain: float = 2.0
    """Travel commands are set this many times the distance to the next waypoint away."""
    final_approach: float = 40.0
    """Distance (px) to a push's start point below which the agent is sent to it exactly."""
    travel_speed: float = 60.0
    """Average distance (px) the agent covers per step while travelling; prices a push's travel."""
    max_travel_steps: int = 25
    """Travel steps after which the expert gives the current push up and plans again."""
    replan_drift: float = 2.0
    """Pose error change (px) during travel (the agent bumped the block) that forces a new plan."""


@dataclass
class _Plan:
    contact: int
    depth: float
    steps: int
    cost_at_plan: float
    travel_steps: int = 0
    push_target: np.ndarray | None = None
    release_target: np.ndarray | None = None


def _rotation(angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin], [sin, cos]])


def _to_world(points: np.ndarray, position: np.ndarray, angle: float) -> np.ndarray:
    """Body-frame points to world points, the way gym-pusht computes its keypoints."""
    return points @ _rotation(angle).T + position


class _Simulator:
    """A private pymunk space with the env's walls, agent, block and PD controller.

    The env's own space cannot be copied (its collision handler holds the env), so the planner
    rebuilds one with gym-pusht's constructors and copies the bodies' states into it. The agent is a
    kinematic body, so contacts never change its motion: its PD trajectory is integrated apart, with
    complex numbers for speed, and only its velocities are fed to pymunk.
    """

    def __init__(self, env: PushTEnv):
        self.space = pymunk.Space()
        self.space.gravity = env.space.gravity
        self.space.damping = env.space.damping
        # Walls in the env's insertion order: `Body.shapes` is a set ordered by object ids, which
        # differ from run to run, and pymunk's contacts depend on the order shapes were added.
        walls = [shape for shape in env.space.shapes if shape.body is env.space.static_body]
        for wall in walls:
            segment = pymunk.Segment(self.space.static_body, wall.a, wall.b, wall.radius)
            segment.friction, segment.elasticity = wall.friction, wall.elasticity
            self.space.add(segment)
        self.agent_radius = float(next(iter(env.agent.shapes)).radius)
        self.agent = PushTEnv.add_circle(self.space, (0, 0), self.agent_radius)
        self.block, self.block_shapes = PushTEnv.add_tee(self.space, (0, 0), 0)
        self.block.center_of_gravity = env.block.center_of_gravity
        self.k_p, self.k_v, self.dt = env.k_p, env.k_v, env.dt
        self.substeps = int(1 / (env.dt * env.control_hz))

    def agent_step(
        self, position: complex, velocity: complex, target: complex
    ) -> tuple[list[complex], complex]:
        """The env's PD law over one control step: the substeps' velocities and the final position."""
        velocities = []
        for _ in range(self.substeps):
            velocity += (self.k_p * (target - position) - self.k_v * velocity) * self.dt
            position += velocity * self.dt
            velocities.append(velocity)
        return velocities, position

    def run(self, velocities: list[complex]) -> None:
        for velocity in velocities:
            self.agent.velocity = (velocity.real, velocity.imag)
            self.space.step(self.dt)

    def set_block(self, angle: float, position: Vec2d, velocity: Vec2d, angular_velocity: float) -> None:
        # Angle before position: pymunk rotates about the centre of gravity (see gym-pusht's _set_state).
        self.block.angle = angle
        self.block.position = position
        self.block.velocity = velocity
        self.block.angular_velocity = angular_velocity

    def block_state(self) -> tuple[float, Vec2d, Vec2d, float]:
        return self.block.angle, self.block.position, self.block.velocity, self.block.angular_velocity


class PushTExpert:
    """Scripted pushing policy for one gym-pusht env (`env.unwrapped`, a `PushTEnv`).

    Call `act()` once per env step; it reads the simulator state directly and returns the agent's
    target position. `forget_plan()` makes it plan afresh (after someone else moved the agent).
    """

    def __init__(
        self,
        env: PushTEnv,
        rng: np.random.Generator,
        config: ExpertConfig | None = None,
        goal_pose: np.ndarray | None = None,
    ):
        """`goal_pose` (x, y, angle) replaces the env's goal: a demonstrator who misremembers it."""
        self.env = env
        self.rng = rng
        self.config = config or ExpertConfig()
        self._sim = _Simulator(env)
        self._radius = self._sim.agent_radius
        self._tee = orient(
            shapely.union_all([shapely.Polygon(s.get_vertices()) for s in self._sim.block_shapes])
        )
        self._keypoints = np.array(
            [tuple(v) for shape in self._sim.block_shapes for v in shape.get_vertices()], dtype=float
        )
        goal = np.asarray(env.goal_pose if goal_pose is None else goal_pose, dtype=float)
        self._goal_keypoints = _to_world(self._keypoints, goal[:2], goal[2])
        self._contacts, self._normals = self._contact_points()
        waypoint_distance = self._radius + self.config.clearance + self.config.waypoint_offset
        buffered = self._tee.buffer(waypoint_distance, join_style="mitre")
        self._waypoints = np.asarray(buffered.exterior.coords)[:-1]
        self._plan: _Plan | None = None

    def _contact_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Contact points along the T's outline (body frame) where the agent fits, with outward normals."""
        contacts, normals = [], []
        ring = np.asarray(self._tee.exterior.coords)
        start_distance = self._radius + self.config.approach_gap
        for a, b in zip(ring[:-1], ring[1:], strict=True):
            edge = b - a
            length = float(np.hypot(*edge))
            normal = np.array([edge[1], -edge[0]]) / length  # outward for a counter-clockwise ring
            count = max(1, round(length / self.config.contact_spacing))
            for fraction in (np.arange(count) + 0.5) / count:
                point = a + fraction * edge
                start = point + normal * start_distance
                if self._tee.distance(shapely.Point(start)) >= start_distance - 0.5:
                    contacts.append(point)
                    normals.append(normal)
        return np.array(contacts), np.array(normals)

    def pose_error(self) -> float:
        """Mean distance (px) between the block's keypoints and the goal's."""
        keypoints = _to_world(self._keypoints, np.asarray(self.env.block.position), self.env.block.angle)
        return float(np.linalg.norm(keypoints - self._goal_keypoints, axis=1).mean())

    def forget_plan(self) -> None:
        self._plan = None

    def act(self) -> np.ndarray:
        """The agent's next target position, in [0, 512]^2."""
        cost = self.pose_error()
        plan = self._plan
        if plan is not None and plan.push_target is None:
            drifted = abs(cost - plan.cost_at_plan) > self.config.replan_drift
            if drifted or plan.travel_steps >= self.config.max_travel_steps:
                plan = None
        if plan is None:
            plan = self._plan = self._choose_push(cost)
        if plan.push_target is None:
            start, push_target = self._push_geometry(plan.contact, plan.depth)
            agent = np.asarray(self.env.agent.position)
            if np.linalg.norm(agent - start) > self.config.arrive_tolerance:
                plan.travel_steps += 1
                return self._travel_command(agent, start)
            plan.push_target, plan.release_target = push_target, start
        if plan.steps > 0:
            plan.steps -= 1
            return plan.push_target
        self._plan = None
        return plan.release_target

    def _push_geometry(self, contact: int, depth: float) -> tuple[np.ndarray, np.ndarray]:
        """World start point and commanded target of a push at `contact`, for the block's current pose."""
        position, angle = np.asarray(self.env.block.position), self.env.block.angle
        point = self._contacts[contact]
        normal = self._normals[contact]
        local = np.stack(
            [
                point + normal * (self._radius + self.config.approach_gap),
                point + normal * (self._radius - depth),
            ]
        )
        start, target = _to_world(local, position, angle)
        return start, np.clip(target, 0.0, ARENA_SIZE)

    def _choose_push(self, cost: float) -> _Plan:
        """Simulate every candidate push; keep the one with the best error reduction per step."""
        agent = np.asarray(self.env.agent.position)
        best: tuple[float, _Plan] | None = None
        fallback: list[_Plan] = []
        for contact in range(len(self._contacts)):
            start, _ = self._push_geometry(contact, 0.0)
            if np.any(start < WORKSPACE_MARGIN) or np.any(start > ARENA_SIZE - WORKSPACE_MARGIN):
                continue
            distance = float(np.linalg.norm(agent - start))
            travel = (
                0.0 if distance <= self.config.arrive_tolerance else 2.0 + distance / self.config.travel_speed
            )
            for depth in self.config.push_depths:
                _, target = self._push_geometry(contact, depth)
                errors = self._simulate_push(start, target, cost)
                steps = int(np.argmin(errors)) + 1
                plan = _Plan(contact=contact, depth=depth, steps=steps, cost_at_plan=cost)
                fallback.append(plan)
                rate = (cost - errors[steps - 1]) / (steps + travel)
                if rate > 0 and (best is None or rate > best[0]):
                    best = (rate, plan)
        if best is not None:
            return best[1]
        if not fallback:
            x, y = self.env.block.position
            raise PlanningError(
                f"No reachable contact point around the block at ({x:.1f}, {y:.1f}): every push "
                f"would start closer than {WORKSPACE_MARGIN:.0f} px to a wall or beyond it"
            )
        # A local minimum: no push helps right now, so try a random one to get out of it.
        return fallback[int(self.rng.integers(len(fallback)))]

    def _simulate_push(self, start: np.ndarray, target: np.ndarray, cost: float) -> list[float]:
        """Pose error after k = 1, 2, ... push steps from `start` towards `target` and one release step.

        The release step (back to `start`) is part of every push: a single step cannot stop the agent,
        so the error that counts is the one after it has let go of the block. A push that has made
        the error worse than `cost` and keeps making it worse is not simulated further.
        """
        sim = self._sim
        sim.set_block(
            self.env.block.angle,
            self.env.block.position,
            self.env.block.velocity,
            self.env.block.angular_velocity,
        )
        start_c, target_c = complex(*start), complex(*target)
        sim.agent.position = Vec2d(*start)
        position, velocity = start_c, 0j
        errors: list[float] = []
        for _ in range(self.config.horizon):
            velocities, position = sim.agent_step(position, velocity, target_c)
            velocity = velocities[-1]
            sim.run(velocities)
            block = sim.block_state()
            sim.run(sim.agent_step(position, velocity, start_c)[0])
            keypoints = _to_world(self._keypoints, np.asarray(sim.block.position), sim.block.angle)
            errors.append(float(np.linalg.norm(keypoints - self._goal_keypoints, axis=1).mean()))
            if len(errors) > 1 and cost < errors[-2] < errors[-1]:
                break
            sim.set_block(*block)
            sim.agent.position = Vec2d(position.real, position.imag)
        return errors

    def _travel_command(self, agent: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Target that moves the agent along its route to `goal` without waiting at every waypoint.

        The PD controller covers only a quarter of the distance to its target in one step, so the
        command is set past the next waypoint (and a close waypoint is skipped), except on the last
        stretch, where the agent must come to rest at `goal` next to the block.
        """
        route = self._route(agent, goal)
        if len(route) > 1 and np.linalg.norm(route[0] - agent) < self.config.waypoint_reached:
            route = route[1:]
        hop = route[0]
        if len(route) == 1 and np.linalg.norm(hop - agent) < self.config.final_approach:
            return hop
        return np.clip(agent + self.config.travel_gain * (hop - agent), 0.0, ARENA_SIZE)

    def _route(self, agent: np.ndarray, goal: np.ndarray) -> list[np.ndarray]:
        """Shortest collision-free route (points after `agent`, ending at `goal`) around the block.

        The route runs through waypoints around the T (its outline pushed outwards) over a visibility
        graph; when the block leaves no route (e.g. pressed against a wall) the agent heads straight
        for the goal.
        """
        position, angle = np.asarray(self.env.block.position), self.env.block.angle
        tee = shapely.transform(self._tee, lambda points: _to_world(points, position, angle))
        waypoints = _to_world(self._waypoints, position, angle)
        inside = np.all(
            (waypoints >= WORKSPACE_MARGIN) & (waypoints <= ARENA_SIZE - WORKSPACE_MARGIN), axis=1
        )
        nodes = np.vstack([agent, goal, waypoints[inside]])
        first, second = np.triu_indices(len(nodes), k=1)
        segments = shapely.linestrings(np.stack([nodes[first], nodes[second]], axis=1))
        free = shapely.distance(segments, tee)
        # Segments from the agent (possibly touching the block) or to the goal may pass closer.
        ends = shapely.distance(shapely.points(nodes[:2]), tee)
        required = np.full(len(first), self._radius + self.config.clearance)
        required[first == 0] = np.minimum(required[first == 0], ends[0] - 0.5)
        required[second == 1] = np.minimum(required[second == 1], ends[1] - 0.5)
        lengths = np.where(free >= required, np.linalg.norm(nodes[first] - nodes[second], axis=1), np.inf)
        graph = np.full((len(nodes), len(nodes)), np.inf)
        graph[first, second] = graph[second, first] = lengths
        previous = _shortest_path_tree(graph, source=1)
        route, node = [], int(previous[0])
        while node >= 0:
            route.append(nodes[node])
            node = int(previous[node])
        return route or [goal]


def _shortest_path_tree(graph: np.ndarray, source: int) -> np.ndarray:
    """Dijkstra on a dense graph; `previous[i]` is the next node from `i` towards `source` (-1: none)."""
    count = len(graph)
    distance = np.full(count, np.inf)
    distance[source] = 0.0
    previous = np.full(count, -1)
    done = np.zeros(count, dtype=bool)
    for _ in range(count):
        node = int(np.argmin(np.where(done, np.inf, distance)))
        if not np.isfinite(distance[node]):
            break
        done[node] = True
        through = distance[node] + graph[node]
        better = (through < distance) & ~done
        distance[better] = through[better]
        previous[better] = node
    return previous
