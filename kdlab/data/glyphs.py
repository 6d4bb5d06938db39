"""`glyphs`: an offline, Omniglot-like few-shot set rendered from the fonts that matplotlib ships.

Omniglot has 1,623 handwritten characters from 50 alphabets, 20 drawers each. `glyphs` keeps that shape
with what every kdlab install already has, the TrueType fonts in `matplotlib.get_data_path()/fonts/ttf`:

* **Classes** are Unicode characters (letters, digits, symbols) that at least `min_styles` of the 16 font
  styles draw (DejaVu Sans / Serif / Sans Mono and STIX General, each regular, bold, italic, bold italic).
* **Alphabets** are groups of Unicode blocks (`ALPHABET_BLOCKS`): Latin, Greek, Cyrillic, Armenian,
  Georgian, Lao, Braille, IPA, arrows, box drawing, mathematical operators, geometric shapes, ...
* **Splits are by alphabet**, as Omniglot's background / evaluation sets (`SPLIT_ALPHABETS`): no alphabet
  has classes in two splits, so meta-test characters come from scripts never seen in meta-training.
* **Samples** ("drawers") are renderings in a random covering font style with a random rotation, scale,
  stroke width and ink level (pen pressure), plus pixel noise; white ink on black, like MAML's inverted
  Omniglot. The glyph's ink box is centred and fitted to the frame, so size and position carry no class
  information (`shift_fraction` adds random offsets; they make the task much harder, see below).

**Look-alikes are removed on purpose**, otherwise some episodes would be unsolvable (Latin A, Greek Alpha
and Cyrillic A are the same drawing), and a meta-test class that looks like a meta-train class would
not be new. Three rules, applied to every candidate in priority order (letters, then digits, then
symbols; lower code point first), and a candidate that matches an already kept class is dropped:

1. *Unicode decomposition*: the NFKD decomposition without combining marks is the character's base
   (é -> e, ² -> 2, Ǆ -> DŽ -> DZ); variants of a base are dropped, keeping the base itself when covered.
2. *Pixel distance*: clean renderings at 20x20 (ink box stretched to the frame, by at most 2x per axis so
   that o/O and 0/O compare as the same oval, then a 3x3 blur) are compared in every font style both
   characters have; if the root-mean-square pixel difference, averaged over those styles, is below
   `lookalike_threshold` (0.12), the later character is dropped. This catches cross-script homoglyphs
   (A / Greek Alpha / Cyrillic A: 0.00-0.01), case pairs that differ only in size (x/X 0.08, o/O 0.10,
   c/C and z/Z 0.11), digit and letter twins (0/O 0.10, 3 and Latin open e 0.10), l/I (0.11), and heavy,
   light or dashed variants of box lines and arrows; distinct pairs stay (a/A 0.32, E/Sigma 0.24, k/K 0.20).
3. *Across splits, every style*: two characters of different splits must also be at least
   `cross_split_threshold` (0.12) apart in each font style they share, not only on average. A sample is
   drawn in one style, and some scripts coincide in one style only: italic Cyrillic te and i are drawn
   as Latin m and u (distance 0.00 in those styles, 0.25 and 0.17 on average), and the up arrow U+2191
   is the raised up arrow U+A71B drawn larger (0.05 in the closest style, 0.13 on average). Without this
   rule such pairs put a meta-train drawing into meta-test. `nearest_cross_split_pairs` lists the
   closest pairs that remain.

Generation is deterministic given `seed` (and the font files and Pillow version, both in the cache key):
sample `j` of a character depends only on the seed, the code point and `j`, so smaller configurations
(`max_classes_per_split`, `samples_per_class`) are subsets of larger ones. The result is cached under
`kdlab.paths.cache_dir(root)` with `kdlab.cache.load_or_build`, keyed by the generation config. A full
build takes about 5 s for the catalogue plus 6 s for the 24,360 images at 28x28 (2-core CPU); smaller
configurations take a fraction of a second. The cache key holds every GlyphConfig field and
GENERATOR_VERSION, so a change of rule or threshold never reuses an old catalogue or image set.

**Difficulty** with the defaults (1,218 classes: 860 meta-train / 106 meta-val / 252 meta-test; 5-way
1-shot on meta-test, 600 episodes of 15 queries): pixel-space nearest neighbour 73 % (5-shot: 93 %).
MAML with kdlab's Conv-4 (32 channels, 1 inner step of lr 0.4, meta-batch 4, 15 queries, Adam 1e-3,
3 test steps) reaches 93.9 % (seed 0) after 400 meta-iterations, about 33 s of CPU. Measured before
rule 3 (1,340 classes): 93.7 and 93.9 % (two seeds), 85 % with 8 channels; at 16x16 it learns more
slowly (83-87 % after 400 iterations, 90-92 % after 1,000). The strongest knob is `shift_fraction`:
0.1 brings the nearest neighbour down to 53 % and MAML (16x16, 400 iterations) to 63 % (before rule 3).
"""
import contextlib
import functools
import math
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from kdlab.cache import config_key, load_or_build
from kdlab.errors import ParameterError
from kdlab.paths import cache_dir

from .base import resolve_device
from .fewshot_base import SPLITS, FewShotDataset, consecutive_splits

try:
    from .registry import register
except ImportError:  # the registry is optional: the loader works on its own
    def register(*args, **kwargs):
        return lambda loader: loader

GENERATOR_VERSION = 3  # bump whenever the rendering changes, so old caches are not reused
RENDER_POINTS = 48          # glyphs are rasterised at this size, then transformed and box-filtered down
SUPERSAMPLE = 2             # output pixels are averages of 2x2 transformed pixels (anti-aliasing)
LOOKALIKE_SIZE = 20         # resolution of the clean renderings compared by the look-alike rule
FILL = 0.8                  # the unjittered ink box spans 80 % of the frame
CANVAS = 4 * RENDER_POINTS  # side of the square every glyph is pasted into before the affine warp

FONT_STYLES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)

# Alphabet -> the Unicode blocks (names as in Unicode's Blocks.txt) it is made of. Only letters of the
# Latin blocks are "Latin"; their digits and signs join "Symbols". Characters of other blocks are unused.
ALPHABET_BLOCKS = {
    "Latin": ("Basic Latin", "Latin-1 Supplement", "Latin Extended-A", "Latin Extended-B",
              "Latin Extended-C", "Latin Extended-D", "Latin Extended Additional",
              "Alphabetic Presentation Forms"),
    "IPA and phonetic": ("IPA Extensions", "Phonetic Extensions", "Phonetic Extensions Supplement",
                         "Spacing Modifier Letters", "Modifier Tone Letters"),
    "Greek": ("Greek and Coptic", "Greek Extended"),
    "Cyrillic": ("Cyrillic", "Cyrillic Supplement", "Cyrillic Extended-B"),
    "Armenian": ("Armenian",),
    "Georgian": ("Georgian", "Georgian Supplement"),
    "Lao": ("Lao",),
    "Braille": ("Braille Patterns",),
    "Arrows": ("Arrows", "Supplemental Arrows-A", "Supplemental Arrows-B",
               "Miscellaneous Symbols and Arrows"),
    "Mathematical operators": ("Mathematical Operators", "Supplemental Mathematical Operators",
                               "Miscellaneous Mathematical Symbols-A", "Miscellaneous Mathematical Symbols-B"),
    "Box drawing": ("Box Drawing", "Block Elements"),
    "Geometric shapes": ("Geometric Shapes",),
    "Technical": ("Miscellaneous Technical", "Control Pictures"),
    "Symbols": ("Miscellaneous Symbols", "Dingbats", "Currency Symbols", "Letterlike Symbols", "Number Forms",
                "General Punctuation", "Enclosed Alphanumerics", "Superscripts and Subscripts"),
}
LATIN_SIGNS_ALPHABET = "Symbols"

# Like Omniglot's background / evaluation alphabets: a fixed assignment, the same for every seed.
SPLIT_ALPHABETS = {
    "train": ("Latin", "IPA and phonetic", "Greek", "Braille", "Mathematical operators", "Box drawing",
              "Symbols"),
    "val": ("Armenian", "Geometric shapes", "Technical"),
    "test": ("Cyrillic", "Georgian", "Lao", "Arrows"),
}

_ALPHABET_OF_BLOCK = {block: alphabet for alphabet, blocks in ALPHABET_BLOCKS.items() for block in blocks}
_SPLIT_OF_ALPHABET = {alphabet: split for split, alphabets in SPLIT_ALPHABETS.items() for alphabet in alphabets}


@dataclass(frozen=True)
class GlyphConfig:
    """Everything that decides the generated images (and so the cache key)."""

    image_size: int = 28
    samples_per_class: int = 20
    max_classes_per_split: int | None = None
    seed: int = 0
    min_styles: int = 8
    lookalike_threshold: float = 0.12
    cross_split_threshold: float = 0.12
    rotation_deg: float = 5.0
    scale_range: tuple = (0.85, 1.05)
    shift_fraction: float = 0.0
    shear: float = 0.0
    stroke_max: int = 1
    ink_range: tuple = (0.3, 1.0)
    noise_std: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(self.scale_range))
        object.__setattr__(self, "ink_range", tuple(self.ink_range))
        for name, (ok, allowed) in _CONFIG_RULES.items():
            value = getattr(self, name)
            try:
                valid = ok(value)
            except TypeError:
                valid = False
            if not valid:
                raise ParameterError(name, value, allowed)


def _int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _real(v):
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


_CONFIG_RULES = {
    "image_size": (lambda v: _int(v) and 8 <= v <= 128, "an integer from 8 to 128"),
    "samples_per_class": (lambda v: _int(v) and 2 <= v <= 1000, "an integer from 2 to 1000"),
    "max_classes_per_split": (lambda v: v is None or (_int(v) and v >= 2), "None (all) or an integer >= 2"),
    "seed": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "min_styles": (lambda v: _int(v) and 1 <= v <= len(FONT_STYLES), f"an integer from 1 to {len(FONT_STYLES)}"),
    "lookalike_threshold": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1] (0 keeps all look-alikes)"),
    "cross_split_threshold": (lambda v: _real(v) and 0 <= v <= 1,
                              "a number in [0, 1] (0 lets look-alikes cross between splits)"),
    "rotation_deg": (lambda v: _real(v) and 0 <= v <= 180, "a number of degrees in [0, 180]"),
    "scale_range": (lambda v: len(v) == 2 and all(_real(s) for s in v) and 0.2 <= v[0] <= v[1] <= 1.25,
                    "a pair (low, high) with 0.2 <= low <= high <= 1.25"),
    "shift_fraction": (lambda v: _real(v) and 0 <= v <= 0.3, "a fraction of the image size in [0, 0.3]"),
    "shear": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "stroke_max": (lambda v: _int(v) and 0 <= v <= 8, f"an integer from 0 to 8 (pixels at {RENDER_POINTS} pt)"),
    "ink_range": (lambda v: len(v) == 2 and all(_real(s) for s in v) and 0.1 <= v[0] <= v[1] <= 1,
                  "a pair (low, high) with 0.1 <= low <= high <= 1"),
    "noise_std": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
}


# ----------------------------------------------------------------------------------------------------
# fonts and Unicode facts


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=None)
def _fonts():
    from PIL import ImageFont

    return tuple(ImageFont.truetype(str(font_dir() / name), RENDER_POINTS) for name in FONT_STYLES)


@functools.lru_cache(maxsize=None)
def coverage():
    """Code point -> tuple of the indices (into FONT_STYLES) of the font styles that draw it."""
    from matplotlib.ft2font import FT2Font

    styles_of = {}
    for index, name in enumerate(FONT_STYLES):
        for code_point in FT2Font(str(font_dir() / name)).get_charmap():
            styles_of.setdefault(code_point, []).append(index)
    return {cp: tuple(styles) for cp, styles in styles_of.items()}


def alphabet_of(char):
    """The alphabet of `char` (see ALPHABET_BLOCKS), or None when its block is not used."""
    from fontTools import unicodedata as unicode_blocks  # fontTools comes with matplotlib

    alphabet = _ALPHABET_OF_BLOCK.get(unicode_blocks.block(char))
    if alphabet == "Latin" and not unicodedata.category(char).startswith("L"):
        return LATIN_SIGNS_ALPHABET
    return alphabet


def split_of(char):
    """The split ("train", "val" or "test") of `char`'s alphabet, or None when its block is not used."""
    return _SPLIT_OF_ALPHABET.get(alphabet_of(char))


def unicode_base(char):
    """NFKD decomposition without combining marks: é -> 'e', ² -> '2', ﬁ -> 'fi'."""
    decomposed = unicodedata.normalize("NFKD", char)
    base = "".join(c for c in decomposed if not unicodedata.category(c).startswith("M"))
    return base or char


def priority(code_point):
    """Which of two look-alikes is kept: letters before digits before symbols, then lower code point."""
    return ("LNS".index(unicodedata.category(chr(code_point))[0]), code_point)


# ----------------------------------------------------------------------------------------------------
# rendering


def glyph_ink(char, style, stroke=0):
    """`char` drawn by font style `style` (index into FONT_STYLES), cropped to its ink: (h, w) uint8, or None."""
    from PIL import Image, ImageDraw

    font = _fonts()[style]
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), char, font=font, fill=255, stroke_width=stroke,
                                stroke_fill=255)
    box = canvas.getbbox()
    return None if box is None else np.asarray(canvas.crop(box))


def place(inks, size, *, rotation=None, scale=None, shift=None, shear=None, stretch=1.0):
    """Fit each ink image into a (size, size) frame and apply its affine jitter, all in one batch.

    The ink box fills FILL of the frame (aspect kept, or stretched by up to `stretch` per axis), then is
    sheared, scaled, rotated (radians) and shifted (pixels). Per-sample arguments are sequences of
    len(inks); None means no jitter. Returns a float tensor (n, size, size) in [0, 1].
    """
    n = len(inks)
    # A fixed canvas (unless a glyph is larger) makes each sample independent of the others in the batch.
    side = max(CANVAS, max(max(ink.shape) for ink in inks) + 2)
    canvas = torch.zeros(n, 1, side, side)
    half_extent = torch.zeros(n, 2)  # ink half-width and half-height in the canvas' [-1, 1] coordinates
    ink_center = torch.zeros(n, 2)   # where the ink's centre landed, same coordinates
    for i, ink in enumerate(inks):
        h, w = ink.shape
        top, left = (side - h) // 2, (side - w) // 2
        canvas[i, 0, top:top + h, left:left + w] = torch.from_numpy(ink.astype(np.float32) / 255.0)
        half_extent[i] = torch.tensor([w / side, h / side])
        ink_center[i] = torch.tensor([(2 * left + w) / side - 1, (2 * top + h) / side - 1])

    def per_sample(values, default, width=1):
        if values is None:
            return torch.full((n, width), default)
        return torch.as_tensor(np.asarray(values), dtype=torch.float32).reshape(n, width)

    rotation, shear = per_sample(rotation, 0.0)[:, 0], per_sample(shear, 0.0)[:, 0]
    scale, shift = per_sample(scale, 1.0), per_sample(shift, 0.0, width=2)
    fit = FILL * scale / half_extent                           # per-axis zoom that fills the frame
    keep_aspect = fit.min(dim=1, keepdim=True).values
    zoom = torch.minimum(fit, keep_aspect * stretch)
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    # forward (ink -> frame) linear part: R(rotation) @ [[1, shear], [0, 1]] @ diag(zoom)
    forward = torch.stack([
        torch.stack([cos * zoom[:, 0], (cos * shear - sin) * zoom[:, 1]], dim=1),
        torch.stack([sin * zoom[:, 0], (sin * shear + cos) * zoom[:, 1]], dim=1),
    ], dim=1)
    inverse = torch.linalg.inv(forward)
    offset = ink_center[:, :, None] - inverse @ (shift * 2 / size)[:, :, None]
    theta = torch.cat([inverse, offset], dim=2)
    fine = size * SUPERSAMPLE
    grid = torch.nn.functional.affine_grid(theta, (n, 1, fine, fine), align_corners=False)
    drawn = torch.nn.functional.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)
    return torch.nn.functional.avg_pool2d(drawn, SUPERSAMPLE)[:, 0].clamp(0.0, 1.0)


def draw_samples(code_point, styles, config):
    """The `config.samples_per_class` jittered renderings of one character, (n, size, size) uint8.

    Sample j depends only on (seed, code point, j): one random stream per character, consumed in order.
    """
    rng = np.random.default_rng([config.seed, code_point])
    size, count = config.image_size, config.samples_per_class
    low, high = config.scale_range
    inks, jitter, ink_levels, noise = [], {"rotation": [], "scale": [], "shift": [], "shear": []}, [], []
    for _ in range(count):
        style = styles[rng.integers(len(styles))]
        jitter["rotation"].append(math.radians(rng.uniform(-config.rotation_deg, config.rotation_deg)))
        jitter["scale"].append(rng.uniform(low, high))
        jitter["shift"].append(rng.uniform(-config.shift_fraction, config.shift_fraction, size=2) * size)
        jitter["shear"].append(rng.uniform(-config.shear, config.shear))
        inks.append(glyph_ink(chr(code_point), style, stroke=int(rng.integers(config.stroke_max + 1))))
        ink_levels.append(rng.uniform(*config.ink_range))
        noise.append(rng.normal(0.0, config.noise_std, size=(size, size)))
    jitter["shift"] = np.stack(jitter["shift"])
    clean = place(inks, size, **jitter) * torch.tensor(ink_levels, dtype=torch.float32)[:, None, None]
    noisy = clean + torch.from_numpy(np.stack(noise)).float()
    return (noisy.clamp(0.0, 1.0) * 255).round().to(torch.uint8)


# ----------------------------------------------------------------------------------------------------
# the class catalogue: coverage, alphabets, look-alike removal


@dataclass
class Catalogue:
    """The usable characters, in priority order, and why every dropped candidate was dropped."""

    code_points: list
    alphabets: list
    styles: list
    dropped: dict  # dropped code point -> (kept code point it duplicates, "unicode" or "pixels")

    def state(self):
        return {"code_points": self.code_points, "alphabets": self.alphabets,
                "styles": [list(s) for s in self.styles],
                "dropped": {int(k): [int(v[0]), v[1]] for k, v in self.dropped.items()}}

    @classmethod
    def from_state(cls, state):
        return cls(state["code_points"], state["alphabets"], [tuple(s) for s in state["styles"]],
                   {int(k): tuple(v) for k, v in state["dropped"].items()})


def candidates(min_styles):
    """Letters, digits and symbols of the used alphabets drawn by >= `min_styles` styles: {cp: styles}."""
    chosen = {}
    for code_point, styles in coverage().items():
        char = chr(code_point)
        if len(styles) >= min_styles and unicodedata.category(char)[0] in "LNS" and alphabet_of(char):
            chosen[code_point] = styles
    return chosen


def drop_unicode_variants(pool):
    """Rule 1: keep one character per NFKD base. Returns (kept {cp: styles}, dropped {cp: (kept, 'unicode')})."""
    groups = {}
    for code_point in pool:
        groups.setdefault(unicode_base(chr(code_point)), []).append(code_point)
    kept, dropped = {}, {}
    for base, members in groups.items():
        base_itself = [cp for cp in members if chr(cp) == base]
        keeper = base_itself[0] if base_itself else min(members, key=priority)
        kept[keeper] = pool[keeper]
        dropped.update({cp: (keeper, "unicode") for cp in members if cp != keeper})
    return kept, dropped


def lookalike_images(pool):
    """Clean 20x20 renderings for the pixel rule: (n, styles, 400) tensor and a (n, styles) coverage mask."""
    code_points = list(pool)
    images = torch.zeros(len(code_points), len(FONT_STYLES), LOOKALIKE_SIZE, LOOKALIKE_SIZE)
    drawn = torch.zeros(len(code_points), len(FONT_STYLES), dtype=torch.bool)
    for row, code_point in enumerate(code_points):
        inks = {style: glyph_ink(chr(code_point), style) for style in pool[code_point]}
        inks = {style: ink for style, ink in inks.items() if ink is not None}
        if inks:
            images[row, list(inks)] = place(list(inks.values()), LOOKALIKE_SIZE, stretch=2.0)
            drawn[row, list(inks)] = True
    blurred = torch.nn.functional.avg_pool2d(images.view(-1, 1, LOOKALIKE_SIZE, LOOKALIKE_SIZE), 3, 1, 1,
                                             count_include_pad=True)
    return blurred.view(len(code_points), len(FONT_STYLES), -1), drawn


def lookalike_distances(images, drawn):
    """RMS pixel difference of every pair, averaged over the styles both draw (inf when none is shared)."""
    return pair_distances(images, drawn)[0]


def closest_style_distances(images, drawn):
    """RMS pixel difference of every pair in the style, of those both draw, where the two are most alike
    (inf when no style is shared): how far apart they look to a drawer of that style."""
    return pair_distances(images, drawn)[1]


def pair_distances(images, drawn):
    """Both distances of every pair in one pass over the styles: (style-averaged, closest-style)."""
    total = torch.zeros(images.shape[0], images.shape[0])
    shared = torch.zeros_like(total)
    closest = torch.full_like(total, math.inf)
    for style in range(images.shape[1]):
        both = drawn[:, style, None] & drawn[None, :, style]
        rms = torch.cdist(images[:, style], images[:, style]) / math.sqrt(images.shape[-1])
        total += rms * both
        shared += both
        closest = torch.where(both, torch.minimum(closest, rms), closest)
    averaged = torch.where(shared > 0, total / shared.clamp(min=1), torch.full_like(total, math.inf))
    return averaged, closest


def drop_pixel_lookalikes(pool, threshold, cross_split_threshold=0.0):
    """Rules 2 and 3: walk the pool in priority order, dropping a character whose style-averaged distance
    to a kept one is below `threshold` ("pixels"), or whose closest-style distance to a kept one of another
    split is below `cross_split_threshold` ("another split")."""
    order = sorted(pool, key=priority)
    ordered = {cp: pool[cp] for cp in order}
    images, drawn = lookalike_images(ordered)
    distances, closest = pair_distances(images, drawn)
    split_number = torch.tensor([SPLITS.index(split_of(chr(cp))) for cp in order])
    enough = drawn.sum(1) >= 1
    kept_rows, dropped = [], {}
    for row, code_point in enumerate(order):
        if not enough[row]:
            continue
        if kept_rows:
            kept = torch.tensor(kept_rows)
            nearest = distances[row, kept]
            best = int(nearest.argmin())
            if float(nearest[best]) < threshold:
                dropped[code_point] = (order[kept_rows[best]], "pixels")
                continue
            across = torch.where(split_number[kept] != split_number[row], closest[row, kept], math.inf)
            best = int(across.argmin())
            if float(across[best]) < cross_split_threshold:
                dropped[code_point] = (order[kept_rows[best]], "another split")
                continue
        kept_rows.append(row)
    kept = {order[row]: tuple(s for s in ordered[order[row]] if drawn[row, s]) for row in kept_rows}
    return kept, dropped


def build_catalogue(min_styles, threshold, cross_split_threshold=0.0):
    """Candidates, minus Unicode variants, minus pixel look-alikes (within and across splits), minus styles
    that draw no ink."""
    pool, dropped = drop_unicode_variants(candidates(min_styles))
    with _one_torch_thread():
        kept, pixel_dropped = drop_pixel_lookalikes(pool, threshold, cross_split_threshold)
    dropped.update(pixel_dropped)
    kept = {cp: styles for cp, styles in kept.items() if len(styles) >= min_styles}
    order = sorted(kept, key=priority)
    return Catalogue(order, [alphabet_of(chr(cp)) for cp in order], [kept[cp] for cp in order], dropped)


def nearest_cross_split_pairs(cat, count=1):
    """The `count` closest pairs of catalogue characters in different splits by closest-style distance,
    nearest first: [(distance, code point, code point)]. Rule 3 keeps every one at or above its threshold."""
    with _one_torch_thread():
        images, drawn = lookalike_images(dict(zip(cat.code_points, cat.styles)))
        closest = closest_style_distances(images, drawn)
    split_number = torch.tensor([SPLITS.index(_SPLIT_OF_ALPHABET[a]) for a in cat.alphabets])
    pair_once = (split_number[:, None] != split_number[None, :]).triu(diagonal=1)
    values, flat = torch.where(pair_once, closest, math.inf).flatten().topk(count, largest=False)
    rows = [divmod(int(i), len(cat.code_points)) for i in flat]
    return [(float(v), cat.code_points[a], cat.code_points[b]) for v, (a, b) in zip(values, rows)]


@contextlib.contextmanager
def _one_torch_thread():
    """Run small-tensor work on one thread: on a busy machine, thread hand-offs cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _versions():
    import matplotlib
    import PIL

    return {"matplotlib": matplotlib.__version__, "pillow": PIL.__version__, "fonts": list(FONT_STYLES),
            "generator": GENERATOR_VERSION}


_CATALOGUES = {}


def catalogue(root=None, min_styles=8, lookalike_threshold=0.12, cross_split_threshold=0.12):
    """The class catalogue: from memory, else from the disk cache under `root`, else built (seconds)."""
    settings = {"min_styles": int(min_styles), "threshold": float(lookalike_threshold),
                "cross_split_threshold": float(cross_split_threshold), **_versions()}
    key = config_key(settings)
    if key not in _CATALOGUES:
        path = cache_dir(root) / f"glyphs-catalogue-{key}.pt"
        state = load_or_build(
            path, lambda: build_catalogue(min_styles, lookalike_threshold, cross_split_threshold).state())
        _CATALOGUES[key] = Catalogue.from_state(state)
    return _CATALOGUES[key]


# ----------------------------------------------------------------------------------------------------
# the dataset


def choose_classes(cat, config):
    """Per split, the catalogue rows it uses: all, or the first `max_classes_per_split` of a seeded shuffle
    (so a smaller subset is part of every larger one)."""
    chosen = {}
    for number, split in enumerate(SPLITS):
        rows = [row for row, alphabet in enumerate(cat.alphabets) if _SPLIT_OF_ALPHABET[alphabet] == split]
        if config.max_classes_per_split is not None and len(rows) > config.max_classes_per_split:
            shuffled = np.random.default_rng([config.seed, number]).permutation(rows)
            rows = sorted(shuffled[:config.max_classes_per_split].tolist())
        chosen[split] = rows
    return chosen


def build_state(cat, config):
    """Render every chosen class and return the FewShotDataset state (images stored as uint8)."""
    chosen = choose_classes(cat, config)
    rows = [row for split in SPLITS for row in chosen[split]]
    with _one_torch_thread():
        blocks = [draw_samples(cat.code_points[row], cat.styles[row], config) for row in rows]
    images = torch.cat(blocks)[:, None]
    labels = torch.arange(len(rows)).repeat_interleave(config.samples_per_class)
    return {
        "name": "glyphs",
        "images_uint8": images,
        "labels": labels,
        "class_names": [chr(cat.code_points[row]) for row in rows],
        "alphabets": [cat.alphabets[row] for row in rows],
        "splits": consecutive_splits({split: len(chosen[split]) for split in SPLITS}),
        "info": {"config": _plain(asdict(config)), "code_points": [cat.code_points[row] for row in rows],
                 "font_styles": [[FONT_STYLES[s] for s in cat.styles[row]] for row in rows], **_versions()},
    }


def _plain(mapping):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in mapping.items()}


@register("glyphs", offline=True, kind="fewshot",
          description="Omniglot-like characters rendered from matplotlib's fonts; split by alphabet (offline)")
def load_glyphs(root=None, device="cpu", **options):
    """The `glyphs` few-shot set: classes are characters, alphabets are Unicode script/symbol groups.

    Options (all of GlyphConfig): image_size=28, samples_per_class=20, max_classes_per_split=None,
    seed=0, min_styles=8, lookalike_threshold=0.12, cross_split_threshold=0.12, and the jitter knobs
    rotation_deg, scale_range, shift_fraction, shear, stroke_max, noise_std. Example:

        data = load_glyphs(image_size=16, max_classes_per_split=200)
        print(data.summary())
    """
    unknown = sorted(set(options) - {f.name for f in fields(GlyphConfig)})
    if unknown:
        raise ParameterError("option", unknown[0],
                             f"one of glyphs' options {', '.join(f.name for f in fields(GlyphConfig))}")
    config = GlyphConfig(**options)
    cat = catalogue(root, config.min_styles, config.lookalike_threshold, config.cross_split_threshold)
    key = config_key({**_plain(asdict(config)), **_versions()})
    path = cache_dir(root) / f"glyphs-{key}.pt"
    state = load_or_build(path, lambda: build_state(cat, config))
    return FewShotDataset.from_state(state).to(resolve_device(device))
