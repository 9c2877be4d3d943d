"""The joint limiter: one control step of position / velocity / acceleration / jerk limiting.

Pure functions of the state, the limits and dt; nothing here keeps state, reads a clock or
counts. `limit_joint_step` turns the velocity a command asks for into the next output within
every joint limit, `tracking_velocity` is the velocity that follows a position reference.

Guarantees of `limit_joint_step` for every step with dt > 0 from a reachable state (a state at
rest inside [lower, upper], then any sequence of steps with the same limits; checked by
test/test_safety_joint_limiter.py):
  * every value finite; position inside [lower, upper];
  * |v| <= v_max (after v_max was tightened mid-motion, |v| comes down at a_max instead);
  * |dv| <= a_max * dt;
  * a stop stays feasible: v^2 / (2 a_max) <= room to the bound ahead, so braking at a_max
    (for any later dt) stops inside the bounds, and `stopping=True` brings the joint to rest
    without speeding up or reversing;
  * with a jerk limit, |da| <= jerk * dt while tracking away from the bounds; a stop request,
    a bound or the velocity limit may cut the acceleration at once (the stop wins over
    smoothness): the step then reports 'jerk_overridden'.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from noetra_ros.core.safety.profile import EffectiveJointLimits

# Slowest approach speed inside the soft band, as a fraction of v_max.
SOFT_BAND_MIN_SPEED_FRACTION = 0.05
# Slack for comparing limits with the floating-point results of the step.
_REL_TOL = 1e-9
_ABS_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class JointMotion:
    """Output state: positions (rad), velocities (rad/s), accelerations (rad/s^2)."""

    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray

    @classmethod
    def at_rest(cls, position: np.ndarray) -> JointMotion:
        """Standing still at `position`."""
        q = np.array(position, dtype=np.float64)
        return cls(q, np.zeros_like(q), np.zeros_like(q))


@dataclass(frozen=True, eq=False)
class JointStep:
    """One limited step: the new motion and which limiters acted (counter names)."""

    motion: JointMotion
    interventions: frozenset[str]


def stop_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed v with v*dt + v^2/(2a) <= distance: after this step the joint can still
    stop (braking at `accel`) before covering `distance`. Holds for any later dt."""
    d = np.maximum(distance, 0.0)
    adt = accel * dt
    return np.maximum(0.0, -adt + np.sqrt(adt * adt + 2.0 * accel * d))


def uniform_scale(wanted: np.ndarray, cap: np.ndarray) -> float:
    """Largest s <= 1 with |s * wanted| <= cap for every joint (scaling keeps the direction)."""
    mag = np.abs(wanted)
    over = mag > cap
    if not np.any(over):
        return 1.0
    with np.errstate(all='ignore'):
        ratios = np.where(over, cap / mag, 1.0)
    s = float(np.min(ratios))
    return s if math.isfinite(s) and s > 0.0 else 0.0


def acceleration_resolution(position: np.ndarray, dt: float) -> np.ndarray:
    """How far a change of acceleration can be off just because positions are doubles:
    velocities and accelerations are differences of positions divided by dt, so one unit of
    float spacing in each of the positions involved becomes spacing / dt^2. Matters only for
    tiny dt (a clock advancing by a sliver)."""
    spacing = np.spacing(np.maximum(np.abs(position), 1.0))
    return 8.0 * spacing / (dt * dt)


def tracking_velocity(position: np.ndarray, reference: np.ndarray,
                      reference_velocity: np.ndarray, limits: EffectiveJointLimits,
                      lower: np.ndarray, upper: np.ndarray, dt: float) -> np.ndarray:
    """The velocity that follows a reference: where it will be one period from now
    (`reference`, clamped into [lower, upper]) and how fast it moves (`reference_velocity`).

    On top of the reference velocity comes a correction toward the reference: the fastest that
    still settles on it without overshoot (braking at a_max, or at half of it with a jerk limit
    while the deceleration ramps up), or the exact remainder when it is small enough to stop
    from within one cycle. A clamped reference is a point to stop at, not one to pass through.
    """
    amax, jerk = limits.acceleration, limits.jerk
    with np.errstate(all='ignore'):
        target = np.clip(reference, lower, upper)
        v_ref = np.where(target != reference, 0.0, reference_velocity)
        err = target - v_ref * dt - position
        if jerk is None:
            reach = np.maximum(stop_speed(np.abs(err), amax, dt),
                               np.minimum(np.abs(err) / dt, amax * dt))
        else:
            brake = 0.5 * amax
            reach = np.maximum(stop_speed(np.abs(err), brake, dt + brake / jerk),
                               np.minimum(np.abs(err) / dt, jerk * dt * dt))
        correction = err / dt
        return v_ref + correction * uniform_scale(correction, reach)


def limit_joint_step(motion: JointMotion, desired_velocity: np.ndarray,
                     limits: EffectiveJointLimits, lower: np.ndarray, upper: np.ndarray,
                     dt: float, speed_scale: float = 1.0, stopping: bool = False) -> JointStep:
    """The next output, as close to `desired_velocity` as every limit allows.

    `lower` / `upper` are the position bounds in force (the safe range, or wider where the
    robot was armed inside the margin band). `speed_scale` (0..1) slows the velocity limit
    down (a late sensor). `stopping` means decelerate to rest: the desired velocity is
    ignored and, with a jerk limit, the step may neither speed a joint up nor reverse it.
    A non-finite desired velocity counts as zero for that joint. dt must be > 0.
    """
    q, v, a = motion.position, motion.velocity, motion.acceleration
    vmax, amax, jerk = limits.velocity, limits.acceleration, limits.jerk
    done: set[str] = set()
    with np.errstate(all='ignore'):
        if stopping:
            vdes = np.zeros_like(q)
        else:
            vdes = np.where(np.isfinite(desired_velocity), desired_velocity, 0.0)
        # Velocity limit (with the sensor-latency slowdown), scaled uniformly to keep direction.
        s = uniform_scale(vdes, vmax * speed_scale)
        if s < 1.0 and speed_scale >= 1.0:
            done.add('limited_velocity')
        vdes = vdes * s
        # Soft band: the speed toward a bound shrinks linearly inside the band, down to a small
        # floor so a clamped target on the bound is reached (the hard braking bound below still
        # stops the joint exactly there).
        if limits.soft_band > 0.0:
            floor = SOFT_BAND_MIN_SPEED_FRACTION
            up = vmax * np.clip((upper - q) / limits.soft_band, floor, 1.0)
            dn = vmax * np.clip((q - lower) / limits.soft_band, floor, 1.0)
            banded = np.clip(vdes, -dn, up)
            if np.any(banded != vdes):
                done.add('soft_limit_slowdown')
            vdes = banded
        # Acceleration (and optional jerk) limit.
        if jerk is None:
            v_new = np.clip(vdes, v - amax * dt, v + amax * dt)
        else:
            # The braking rule of stop_speed one derivative up: the acceleration toward the
            # wanted velocity is only as large as can be ramped back to zero without overshoot.
            ev = vdes - v
            amag = np.minimum(amax, np.maximum(stop_speed(np.abs(ev), jerk, dt),
                                               np.minimum(np.abs(ev) / dt, jerk * dt)))
            a_new = np.clip(np.sign(ev) * amag, a - jerk * dt, a + jerk * dt)
            a_new = np.clip(a_new, -amax, amax)
            v_new = v + a_new * dt
            if stopping:
                # Neither speed up nor swing past zero into reverse: the stop wins.
                same = np.sign(v_new) == np.sign(v)
                v_new = np.where(same, np.sign(v) * np.minimum(np.abs(v_new), np.abs(v)), 0.0)
        if np.any(np.abs(v_new - vdes) > _ABS_TOL):
            done.add('limited_accel')
        # Hard bounds: stay able to stop before the position bounds; never above v_max (after
        # v_max was tightened mid-motion the speed comes down at a_max, no jump).
        vlim = np.maximum(vmax, np.abs(v) - amax * dt)
        up = np.minimum(vlim, stop_speed(upper - q, amax, dt))
        dn = np.minimum(vlim, stop_speed(q - lower, amax, dt))
        bounded = np.clip(v_new, -dn, up)
        if np.any(np.abs(bounded - v_new) > _ABS_TOL):
            done.add('braking_to_limit')
        q_new = np.clip(q + bounded * dt, lower, upper)
    if not np.all(np.isfinite(q_new)):
        # Defensive: never emit a non-finite value; stand still instead.
        done.add('nonfinite_output_blocked')
        q_new = q.copy()
    v_new = (q_new - q) / dt
    a_new = (v_new - v) / dt
    if jerk is not None and np.any(np.abs(a_new - a) > jerk * dt * (1 + _REL_TOL) + _ABS_TOL
                                   + acceleration_resolution(q_new, dt)):
        done.add('jerk_overridden')
    return JointStep(JointMotion(q_new, v_new, a_new), frozenset(done))


def gentle_braking_velocity(velocity: np.ndarray, limits: EffectiveJointLimits,
                            dt: float) -> np.ndarray:
    """The velocity after one step of braking every joint by the same factor (the direction
    of motion is kept), as hard as a_max allows for every joint."""
    speed = np.abs(velocity)
    with np.errstate(divide='ignore', invalid='ignore'):
        room = np.where(speed > 0.0, limits.acceleration * dt / speed, np.inf)
    factor = max(0.0, 1.0 - float(np.min(room))) if room.size else 0.0
    return velocity * factor


def braking_positions(position: np.ndarray, velocity: np.ndarray, accel: np.ndarray,
                      samples: int) -> np.ndarray:
    """(samples, N) points of the stop from (position, velocity) when every joint brakes at
    its own `accel` (continuous time; the last row is where the joints come to rest).

    Discrete braking at any dt stops within this distance (its steps are a right Riemann sum
    of the same decreasing speed), so the path is the farthest a stop can reach.
    """
    with np.errstate(all='ignore'):
        stop_time = np.where(accel > 0.0, np.abs(velocity) / accel, 0.0)
    horizon = float(np.max(stop_time)) if stop_time.size else 0.0
    if not math.isfinite(horizon) or horizon <= 0.0:
        return np.array([position])
    times = horizon * np.arange(1, samples + 1)[:, None] / samples
    t = np.minimum(times, stop_time[None, :])
    return position + velocity * t - np.sign(velocity) * accel * t * t / 2.0
