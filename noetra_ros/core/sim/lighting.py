"""The light the sim's cameras are rendered with: a validated `Lighting`, the named conditions a
policy is evaluated under (pre-registered, issue 15) and a seeded per-episode jitter for
recording demonstrations under varied light.

PyBullet's TinyRenderer (the renderer of every SimWorld camera) shades a surface pixel of
colour c, channel i, as (bullet3 examples/TinyRenderer/TinyRenderer.cpp, Shader::fragment):

    int(ambient * c_i + shadow * (diffuse * max(0, n . l) + specular * s) * c_i * colour_i)

clipped to 255, where l is the normalised light direction (towards the light, world frame),
n the surface normal and s a specular term. Consequences this module is built on:

- The light colour tints the directional part (diffuse + specular) only; the ambient part stays
  the surface's own colour. A tint therefore shifts channel ratios by a fraction of its value.
- Pixels where no surface is hit keep the renderer's clear colour (white) whatever the light.
- `brightness` scales all three coefficients, so every lit pixel is `brightness` times its
  default value before the truncation to an integer (and the clip at 255): "x % darker" means
  brightness = 1 - x / 100. The mean pixel value over a whole image falls by a little less
  (background pixels, truncation); tools/lighting_check.py measures it per camera
  (docs/results/lighting_conditions.txt).

Only camera images depend on the light; physics never reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Any

import numpy as np

from noetra_ros.core.errors import ConfigError, UnknownNameError

# What the TinyRenderer uses when getCameraImage is given no light arguments (bullet3
# examples/SharedMemory/plugins/tinyRendererPlugin/TinyRendererVisualShapeConverter.cpp,
# render(): z-up light direction (-50, 30, 100), white light, ambient 0.6, diffuse 0.35,
# specular 0.05). The default Lighting passes exactly these, so today's images do not change
# (test_lighting checks it pixel for pixel against a call without the arguments).
PYBULLET_LIGHT_DIRECTION: tuple[float, float, float] = (-50.0, 30.0, 100.0)
PYBULLET_AMBIENT = 0.6
PYBULLET_DIFFUSE = 0.35
PYBULLET_SPECULAR = 0.05

# Bounds that keep a configuration meaningful: beyond them images saturate or go black.
MAX_BRIGHTNESS = 2.0
MAX_COLOUR = 2.0
MAX_COEFFICIENT = 2.0


def _three_finite(value: Any, where: str) -> tuple[float, float, float]:
    try:
        array = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        array = np.full(1, np.nan)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ConfigError(f'{where}: {value!r} must be 3 finite numbers')
    return (float(array[0]), float(array[1]), float(array[2]))


def _number(value: Any, where: str, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f'{where}: {value!r} must be a number')
    number = float(value)
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = '(' if low_open else '['
        raise ConfigError(f'{where}: {value!r} must be in {bracket}{low:g}, {high:g}]')
    return number


@dataclass(frozen=True)
class Lighting:
    """The one light of the scene as the TinyRenderer takes it.

    brightness: scales ambient, diffuse and specular together (0.85 = "15 % darker").
    colour: RGB of the light (1, 1, 1 = white); tints the directional part only (module doc).
    direction: towards the light, world frame (z up); any length, the renderer normalises it.
    ambient / diffuse / specular: the shading coefficients before `brightness`.
    The defaults are PyBullet's own, so Lighting() renders today's images.
    """

    brightness: float = 1.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    direction: tuple[float, float, float] = PYBULLET_LIGHT_DIRECTION
    ambient: float = PYBULLET_AMBIENT
    diffuse: float = PYBULLET_DIFFUSE
    specular: float = PYBULLET_SPECULAR

    def __post_init__(self) -> None:
        object.__setattr__(self, 'brightness', _number(
            self.brightness, 'Lighting.brightness', 0.0, MAX_BRIGHTNESS, low_open=True))
        colour = _three_finite(self.colour, 'Lighting.colour')
        if min(colour) < 0.0 or max(colour) > MAX_COLOUR:
            raise ConfigError(f'Lighting.colour: {self.colour!r} must have every channel in '
                              f'[0, {MAX_COLOUR:g}]')
        object.__setattr__(self, 'colour', colour)
        direction = _three_finite(self.direction, 'Lighting.direction')
        if math.hypot(*direction) < 1e-9:
            raise ConfigError(f'Lighting.direction: {self.direction!r} must not be zero')
        object.__setattr__(self, 'direction', direction)
        for name in ('ambient', 'diffuse', 'specular'):
            object.__setattr__(self, name, _number(
                getattr(self, name), f'Lighting.{name}', 0.0, MAX_COEFFICIENT))

    def camera_image_arguments(self) -> dict[str, Any]:
        """Keyword arguments of pybullet.getCameraImage that render with this light.

        Always all of them: the renderer keeps a light argument once given for every later
        image of the client, so a world that changes its light per episode must restate all.
        """
        return {
            'lightDirection': list(self.direction),
            'lightColor': list(self.colour),
            'lightAmbientCoeff': self.brightness * self.ambient,
            'lightDiffuseCoeff': self.brightness * self.diffuse,
            'lightSpecularCoeff': self.brightness * self.specular,
        }

    def describe(self) -> str:
        """One line for logs and reports."""
        return (f'brightness {self.brightness:g}, colour '
                f'({", ".join(f"{c:g}" for c in self.colour)}), direction '
                f'({", ".join(f"{d:g}" for d in self.direction)}), ambient {self.ambient:g}, '
                f'diffuse {self.diffuse:g}, specular {self.specular:g}')


def _azimuth_elevation(direction: tuple[float, float, float]) -> tuple[float, float]:
    x, y, z = direction
    return math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y)))


def _direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


@dataclass(frozen=True)
class LightingJitter:
    """Per-episode random light for recording demonstrations (off unless configured).

    Drawn from the episode seed only (its own random stream, so the scene the seed gives is
    unchanged): brightness uniform in `brightness`, each colour channel times a factor uniform
    in [1 - colour, 1 + colour], the light direction turned about z by up to `azimuth_deg` and
    raised / lowered by up to `elevation_deg` (kept between 10 and 85 degrees above the
    horizon). The defaults stay clear of the pre-registered test conditions except darker_15,
    which lies inside the brightness range (see CONDITIONS).
    """

    brightness: tuple[float, float] = (0.8, 1.2)
    colour: float = 0.1
    azimuth_deg: float = 45.0
    elevation_deg: float = 15.0

    def __post_init__(self) -> None:
        try:
            low, high = (float(v) for v in self.brightness)
        except (TypeError, ValueError):
            raise ConfigError(f'LightingJitter.brightness: {self.brightness!r} must be two '
                              'numbers (low, high)') from None
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high
                <= MAX_BRIGHTNESS):
            raise ConfigError(f'LightingJitter.brightness: {self.brightness!r} needs '
                              f'0 < low <= high <= {MAX_BRIGHTNESS:g}')
        object.__setattr__(self, 'brightness', (low, high))
        object.__setattr__(self, 'colour', _number(self.colour, 'LightingJitter.colour', 0.0,
                                                   0.9))
        object.__setattr__(self, 'azimuth_deg', _number(
            self.azimuth_deg, 'LightingJitter.azimuth_deg', 0.0, 180.0))
        object.__setattr__(self, 'elevation_deg', _number(
            self.elevation_deg, 'LightingJitter.elevation_deg', 0.0, 75.0))

    def sample(self, base: Lighting, seed: int) -> Lighting:
        """The light of the episode with `seed`: `base` varied as the fields say."""
        # A stream of its own ([seed, 'L' 'T']), independent of the scene's default_rng(seed).
        rng = np.random.default_rng([int(seed), 0x4C54])
        brightness = base.brightness * float(rng.uniform(*self.brightness))
        factors = rng.uniform(1.0 - self.colour, 1.0 + self.colour, 3)
        red, green, blue = (float(min(MAX_COLOUR, c * f)) for c, f in zip(base.colour, factors))
        azimuth, elevation = _azimuth_elevation(base.direction)
        azimuth += float(rng.uniform(-self.azimuth_deg, self.azimuth_deg))
        elevation = float(np.clip(elevation + rng.uniform(-self.elevation_deg,
                                                          self.elevation_deg), 10.0, 85.0))
        return replace(base, brightness=min(MAX_BRIGHTNESS, brightness),
                       colour=(red, green, blue),
                       direction=_direction(azimuth, elevation))


# The lighting conditions of the robustness evaluation (tools/eval_robustness.py), fixed before
# any model was trained with light variation (pre-registered; do not retune them to a result).
# Relative to LightingJitter's defaults: darker_15 lies inside its brightness range, darker_30
# below it, the tints beyond its +-10 % per channel, 'side' about 140 degrees of azimuth from
# the default light (beyond +-45) and lower.
CONDITIONS: dict[str, Lighting] = {
    'default': Lighting(),
    'darker_15': Lighting(brightness=0.85),
    'darker_30': Lighting(brightness=0.70),
    # Warm (yellowish, incandescent-like) and cool (bluish, daylight-like) light; the channels
    # average about 1 so the tint, not the overall level, is what changes.
    'warm': Lighting(colour=(1.25, 1.0, 0.7)),
    'cool': Lighting(colour=(0.75, 1.0, 1.25)),
    # From the front right (the -y side, towards the workspace camera), lower than default.
    'side': Lighting(direction=(30.0, -100.0, 40.0)),
}


def lighting_condition(name: str) -> Lighting:
    """The named condition (CONDITIONS); UnknownNameError listing the names otherwise."""
    if name not in CONDITIONS:
        raise UnknownNameError(f'lighting condition {name!r} is not known; allowed: '
                               f'{", ".join(CONDITIONS)}')
    return CONDITIONS[name]
