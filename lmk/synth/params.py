"""SynthFace's random draws: one face's parameters, and the WFLW attribute flags they imply.

Everything random about a face is drawn here, up front, into a frozen ``FaceParams``, so a
caller can force any field (``render_face(seed, yaw=55)``) without moving the other draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lmk.core.errors import LmkError

# Attribute thresholds, applied to a sample's own render parameters.
POSE_YAW_DEG = 40.0
POSE_PITCH_DEG = 25.0
EXPRESSION_MOUTH_OPEN = 0.09  # face widths between the lips
EXPRESSION_SMILE = 0.65
ILLUMINATION_GRADIENT = 0.55  # gain change per face width
ILLUMINATION_DARK = 0.55  # overall brightness below this is "dark"
MAKEUP_STRENGTH = 0.5
OCCLUSION_FRACTION = 0.15  # of the in-image landmarks covered by an occluder
BLUR_FRACTION = 0.012  # blur sigma in face widths (motion: length / 4)

OCCLUDERS = ("none", "rect", "ellipse", "hand", "bar", "sunglasses")
BLURS = ("none", "gaussian", "motion")
HAIR_STYLES = ("bald", "short", "long")


def sample_seed(base: int, index: int) -> int:
    """Seed of sample ``index`` in a set made with seed ``base`` (non-overlapping across bases)."""
    state = np.random.SeedSequence([int(base) & 0xFFFFFFFF, int(index)]).generate_state(2)
    return int(state[0]) << 31 | int(state[1]) >> 1


@dataclass(frozen=True)
class FaceParams:
    """Everything random about one face; ``render_face(**overrides)`` can force any field.

    Lengths are in face widths unless named otherwise; colours are BGR 0-255 floats.
    """

    # identity
    width_scale: float
    height_scale: float
    eye_spacing: float
    eye_size: float
    eye_open: float
    gaze: tuple[float, float]
    brow_height: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    mouth_open: float
    smile: float
    jaw_width: float
    chin_length: float
    forehead_height: float
    # pose and camera
    yaw: float
    pitch: float
    roll: float
    camera_distance: float
    # placement: face width / image width; position in the allowed range (0..1 each axis);
    # off_frame > 0 lets the landmark box leave the image by that fraction of its size
    face_width: float
    position: tuple[float, float]
    off_frame: float
    # appearance
    skin: tuple[float, float, float]
    hair_style: str
    hair: tuple[float, float, float]
    hair_volume: float
    brow_color: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    makeup: float
    eyeshadow: tuple[float, float, float]
    clothes: tuple[float, float, float]
    glasses: bool
    glasses_color: tuple[float, float, float]
    # occluder, placed relative to one landmark
    occluder: str
    occluder_anchor: int
    occluder_offset: tuple[float, float]
    occluder_size: float
    occluder_aspect: float
    occluder_angle: float
    occluder_color: tuple[float, float, float]
    occluder_stripes: bool
    # image effects
    light_angle: float
    light_strength: float
    brightness: float
    white_balance: tuple[float, float, float]
    blur: str
    blur_amount: float
    blur_angle: float
    noise: float


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(FaceParams))
_FIELDS = frozenset(PARAM_NAMES)


def jittered_color(
    rng: np.random.Generator, base: tuple[float, float, float], spread: float
) -> tuple:
    """``base`` BGR plus Gaussian noise of ``spread`` per channel, clamped to 0-255: looks that
    vary around a type (hair, lips, stripes) instead of uniformly random colours."""
    noise = rng.normal(0.0, spread, 3)
    return tuple(_clamp(float(b + n), 0.0, 255.0) for b, n in zip(base, noise, strict=True))


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def _skin_tone(rng: np.random.Generator) -> tuple[float, float, float]:
    if rng.random() < 0.04:  # the odd cartoon colour keeps the model from keying on skin hue
        return tuple(float(v) for v in rng.uniform(40, 230, 3))
    t = rng.random()
    light, mid, dark = np.array([175, 200, 238]), np.array([110, 150, 205]), np.array([50, 75, 115])
    base = light + (mid - light) * (t / 0.6) if t < 0.6 else mid + (dark - mid) * ((t - 0.6) / 0.4)
    return jittered_color(rng, tuple(base), 10.0)


_HAIR = [(20, 20, 25), (25, 40, 70), (40, 70, 120), (80, 140, 200), (30, 50, 150), (150, 150, 155)]
_IRIS = [(30, 50, 90), (20, 35, 60), (140, 110, 60), (90, 120, 70), (110, 110, 110)]


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one face's parameters (identity, pose, looks, occluder, image effects)."""
    u = rng.uniform

    def near_frontal(limit: float, sd: float) -> float:
        if rng.random() < 0.2:
            return float(u(-limit, limit))
        return _clamp(float(rng.normal(0.0, sd)), -limit, limit)

    skin = _skin_tone(rng)
    hair_base = _HAIR[rng.integers(len(_HAIR))]
    hair = (
        jittered_color(rng, hair_base, 12.0)
        if rng.random() > 0.05
        else jittered_color(rng, (128,) * 3, 70)
    )
    makeup = float(u(0.0, 1.0)) if rng.random() < 0.3 else 0.0
    if makeup > 0.3:
        lip_base = [(40, 30, 190), (90, 40, 150), (110, 90, 220), (30, 20, 90)][rng.integers(4)]
        lips = jittered_color(rng, lip_base, 15.0)
    else:
        lips = jittered_color(rng, (skin[0] * 0.75, skin[1] * 0.7, min(255.0, skin[2] * 1.0)), 8.0)
    occluder = "none"
    if rng.random() < 0.3:
        occluder = str(rng.choice(OCCLUDERS[1:], p=[0.3, 0.2, 0.3, 0.1, 0.1]))
    blur_pick = rng.random()
    blur = "none" if blur_pick < 0.55 else "gaussian" if blur_pick < 0.85 else "motion"
    blink = rng.random() < 0.06
    return FaceParams(
        width_scale=float(u(0.88, 1.1)),
        height_scale=float(u(0.9, 1.12)),
        eye_spacing=_clamp(float(rng.normal(0.0, 0.015)), -0.035, 0.035),
        eye_size=float(u(0.85, 1.2)),
        eye_open=float(u(0.0, 0.3)) if blink else float(u(0.75, 1.3)),
        gaze=(float(u(-0.13, 0.13)), float(u(-0.12, 0.12))),
        brow_height=float(u(-0.025, 0.05)),
        brow_thickness=float(u(0.6, 1.4)),
        nose_length=float(u(0.85, 1.2)),
        nose_width=float(u(0.85, 1.25)),
        mouth_width=float(u(0.85, 1.2)),
        lip_thickness=float(u(0.7, 1.4)),
        mouth_open=0.0 if rng.random() < 0.5 else float(u(0.0, 1.0) ** 1.5 * 0.18),
        smile=float(u(-0.3, 0.3)) if rng.random() < 0.6 else float(u(0.0, 1.0)),
        jaw_width=float(u(0.85, 1.12)),
        chin_length=float(u(0.9, 1.15)),
        forehead_height=float(u(0.32, 0.46)),
        yaw=near_frontal(60.0, 20.0),
        pitch=near_frontal(30.0, 9.0),
        roll=near_frontal(30.0, 9.0),
        camera_distance=float(1.0 / u(0.1, 0.4)),
        face_width=float(u(0.35, 0.7)),
        position=(float(u(0.0, 1.0)), float(u(0.0, 1.0))),
        off_frame=float(u(0.05, 0.3)) if rng.random() < 0.05 else 0.0,
        skin=skin,
        hair_style=str(rng.choice(HAIR_STYLES, p=[0.15, 0.55, 0.3])),
        hair=hair,
        hair_volume=float(u(0.8, 1.25)),
        brow_color=jittered_color(rng, tuple(np.asarray(hair) * 0.7), 8.0),
        iris=jittered_color(rng, _IRIS[rng.integers(len(_IRIS))], 12.0),
        lips=lips,
        makeup=makeup,
        eyeshadow=jittered_color(
            rng, (float(u(40, 200)), float(u(20, 120)), float(u(40, 200))), 10.0
        ),
        clothes=tuple(float(v) for v in rng.uniform(0, 255, 3)),
        glasses=bool(rng.random() < 0.12),
        glasses_color=jittered_color(rng, (40, 40, 40), 30.0),
        occluder=occluder,
        occluder_anchor=int(rng.integers(98)),
        occluder_offset=(float(u(-0.15, 0.15)), float(u(-0.15, 0.15))),
        occluder_size=float(u(0.25, 0.6)),
        occluder_aspect=float(u(0.4, 1.0)),
        occluder_angle=float(u(0.0, 180.0)),
        occluder_color=tuple(float(v) for v in rng.uniform(0, 255, 3)),
        occluder_stripes=bool(rng.random() < 0.3),
        light_angle=float(u(0.0, 360.0)),
        light_strength=float(u(0.0, 0.3)) if rng.random() < 0.75 else float(u(0.3, 1.0)),
        brightness=float(u(0.85, 1.15)) if rng.random() < 0.85 else float(u(0.3, 0.85)),
        white_balance=(float(u(0.88, 1.12)), 1.0, float(u(0.88, 1.12))),
        blur=blur,
        blur_amount=float(u(0.0, 1.0) ** 2 * 0.03),
        blur_angle=float(u(0.0, 180.0)),
        noise=float(u(0.0, 4.0)) if rng.random() < 0.7 else float(u(4.0, 14.0)),
    )


def attributes_of(params: FaceParams, occluded_fraction: float) -> np.ndarray:
    """WFLW's six flags (``lmk.core.layouts.WFLW_ATTRIBUTES`` order) as uint8, decided from the
    face's own parameters so SynthFace subsets mean what WFLW's do."""
    return np.array(
        [
            abs(params.yaw) > POSE_YAW_DEG or abs(params.pitch) > POSE_PITCH_DEG,
            params.mouth_open > EXPRESSION_MOUTH_OPEN or params.smile > EXPRESSION_SMILE,
            params.light_strength > ILLUMINATION_GRADIENT or params.brightness < ILLUMINATION_DARK,
            params.makeup > MAKEUP_STRENGTH,
            occluded_fraction >= OCCLUSION_FRACTION,
            params.blur != "none" and _blur_sigma_fraction(params) > BLUR_FRACTION,
        ],
        dtype=np.uint8,
    )


def _blur_sigma_fraction(params: FaceParams) -> float:
    return params.blur_amount / 4.0 if params.blur == "motion" else params.blur_amount


def resolve_params(rng: np.random.Generator, overrides: dict) -> FaceParams:
    """Random parameters with ``overrides`` forced; unknown names are an error."""
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise LmkError(f"unknown render parameter(s): {', '.join(unknown)}")
    params = dataclasses.replace(sample_params(rng), **overrides)
    if params.occluder not in OCCLUDERS:
        raise LmkError(f"occluder must be one of {', '.join(OCCLUDERS)}")
    if params.blur not in BLURS:
        raise LmkError(f"blur must be one of {', '.join(BLURS)}")
    if params.hair_style not in HAIR_STYLES:
        raise LmkError(f"hair_style must be one of {', '.join(HAIR_STYLES)}")
    return params
