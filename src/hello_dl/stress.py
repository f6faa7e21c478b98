"""A stress test of what the network really uses: change what should not matter, watch the answer.

A radiograph stays the same radiograph when it is stored at another resolution, as grayscale
instead of RGB, as a 16-bit file, padded to a square, turned by a few degrees, shown with another
contrast or window, or with its L/R side marker covered. A network that learned the *anatomy*
gives (nearly) the same score for every version; a network that learned *how the files were
made* changes its answer. This module measures that on the network's own behaviour:

* :func:`stress_test` takes the validation and TEST images (duplicates counted once), applies each
  :class:`Change` to the full-size image **before** the kit's own resize, runs the model on the
  original and the changed version, and reports per change how often the predicted class flips and
  how far the score moves (:class:`StressResult`: ``.format()`` for people, ``.as_dict()`` for
  JSON, the numbers as attributes; drawing lives in :mod:`hello_dl.plots`).
* :func:`other_sources_test` makes images that look like they came from other hospitals or
  publications (another resolution and bit depth, JPEG compression, a different crop or border)
  from the kit's own labelled images, and reports the accuracy on each such "source".

Changes that go through a file format (grayscale, 16-bit, JPEG) are really encoded with Pillow in
memory and decoded with the kit's own converter (:func:`hello_dl.images.pil_to_rgb`), so the test
includes what the kit's loader does with such files (a 16-bit image is stretched from its own
darkest to brightest pixel, for example).

What a flip means, and what no flip does not prove: a flip shows the decision depends on
something that should not matter (for that image). No flip on these few images does not prove the
network uses anatomy; it only rules out the cues that were tested, on these images.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from hello_dl import dataset as dataset_module
from hello_dl import filetypes
from hello_dl import images as images_module
from hello_dl import inference, runs
from hello_dl.settings import Settings
from hello_dl.stats import Proportion

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load

#: The issue's target: no change may flip more than this share of the answers.
MAX_FLIP_RATE = 0.10

ImageChange = Callable[[np.ndarray], np.ndarray]


# --- image changes (full-size uint8 RGB in, uint8 RGB out, any size) ----------------------------------
def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))


def _through_file(img: Image.Image, **save_options: Any) -> np.ndarray:
    """Encode in memory, decode as the kit decodes files (same mode rules as ``load_image``)."""
    buffer = io.BytesIO()
    img.save(buffer, **save_options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return images_module.pil_to_rgb(decoded, source="in-memory test image")


def luminance(image: np.ndarray) -> np.ndarray:
    """Gray values (ITU-R 601 luma, as Pillow's ``convert("L")``) as float 0-255."""
    rgb = np.asarray(image, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """The same picture with ``factor`` times the pixels per side (bilinear, antialiased)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(_pil(image).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def as_grayscale_file(image: np.ndarray) -> np.ndarray:
    """Stored as an 8-bit grayscale PNG (one channel) and read back by the kit."""
    return _through_file(_pil(image).convert("L"), format="PNG")


def as_16bit_file(image: np.ndarray, bits: int = 12) -> np.ndarray:
    """Stored as a 16-bit grayscale PNG holding ``bits``-bit data (as detectors export) and read back.

    The kit stretches a 16-bit image from its own darkest to brightest pixel, so an image that did
    not use the full 8-bit range before comes back with more contrast: part of what is tested.
    """
    gray = luminance(image) / 255.0 * (2 ** bits - 1)
    img = Image.fromarray(np.rint(gray).astype(np.uint16))  # mode I;16
    return _through_file(img, format="PNG")


def as_jpeg_file(image: np.ndarray, quality: int = 35) -> np.ndarray:
    """Saved as a JPEG of the given quality (a web or e-mail copy) and read back by the kit."""
    return _through_file(_pil(image), format="JPEG", quality=int(quality))


def pad_to_square(image: np.ndarray, value: int = 0) -> np.ndarray:
    """Centred padding (black by default) to a square; a square image is returned unchanged."""
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = np.full((side, side, 3), value, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top:top + height, left:left + width] = image
    return canvas


def add_border(image: np.ndarray, fraction: float = 0.06, value: int = 0) -> np.ndarray:
    """A frame of ``fraction`` of the longer side on every edge (black, or e.g. 255 for a film scan)."""
    height, width = image.shape[:2]
    margin = max(1, round(fraction * max(height, width)))
    canvas = np.full((height + 2 * margin, width + 2 * margin, 3), value, dtype=np.uint8)
    canvas[margin:margin + height, margin:margin + width] = image
    return canvas


def rotate_within_frame(image: np.ndarray, degrees: float = 5.0) -> np.ndarray:
    """The anatomy turned by ``degrees`` (counter-clockwise) inside the frame.

    The rotated picture is cropped to the largest centred rectangle of the same shape that holds
    no filled-in corner, so the change adds no black triangles (a border cue of its own).
    """
    height, width = image.shape[:2]
    theta = math.radians(abs(degrees))
    cos, sin = math.cos(theta), math.sin(theta)
    keep = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
    turned = _pil(image).rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False)
    new_w, new_h = max(1, math.floor(width * keep)), max(1, math.floor(height * keep))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return np.asarray(turned.crop((left, top, left + new_w, top + new_h)), dtype=np.uint8)


def lower_contrast(image: np.ndarray, keep: float = 0.7) -> np.ndarray:
    """Gray values squeezed into the middle ``keep`` share of the range (a flatter display)."""
    pixels = np.asarray(image, dtype=np.float32)
    return np.rint(pixels * keep + 127.5 * (1.0 - keep)).astype(np.uint8)


def narrow_window(image: np.ndarray, low_percentile: float = 5.0, high_percentile: float = 95.0) -> np.ndarray:
    """A narrower window: the image's own 5th..95th percentile stretched to black..white (clipped)."""
    pixels = np.asarray(image, dtype=np.float32)
    gray = luminance(image)
    low, high = np.percentile(gray, [low_percentile, high_percentile])
    if high - low < 1.0:
        return np.asarray(image, dtype=np.uint8).copy()
    return np.rint(np.clip((pixels - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def mask_corner_marks(image: np.ndarray, corner: float = 0.25, stroke: float = 0.03,
                      contrast: float = 60.0, largest: float = 0.12) -> np.ndarray:
    """Cover the L/R side marker and other burnt-in marks in the four corners (an approximation).

    There are no marker outlines in the data, so markers are *found*. A background estimate is a
    gray opening (minimum then maximum filter) with a window of ``stroke`` of the shorter side (15
    pixels at 512): it removes bright strokes thinner than the window (letters, digits, arrows)
    and keeps broad anatomy. Pixels more than ``contrast`` gray levels above it form candidate
    marks; a candidate is taken as a mark only if it lies wholly inside one corner region
    (``corner`` of the width by ``corner`` of the height) and is no bigger than ``largest`` of the
    shorter side, so long bright edges (a clavicle, the film's edge) are left alone. Marks are
    replaced by the background. It misses dark-on-light markers, markers outside the corners and
    marks touching bone; the chest images of this dataset carry their "L" in the top-right corner.
    """
    from scipy import ndimage  # scikit-learn's own dependency; imported here to keep start-up fast

    out = np.asarray(image, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    window = max(3, int(round(stroke * min(height, width))) | 1)
    gray = luminance(out)
    background = ndimage.grey_opening(gray, size=(window, window))
    labelled, _ = ndimage.label((gray - background) > contrast)
    ch, cw = max(1, round(corner * height)), max(1, round(corner * width))
    limit = largest * min(height, width)
    chosen = np.zeros((height, width), dtype=bool)
    for number, box in enumerate(ndimage.find_objects(labelled), start=1):
        if box is None:
            continue
        rows, cols = box
        inside_rows = rows.stop <= ch or rows.start >= height - ch
        inside_cols = cols.stop <= cw or cols.start >= width - cw
        small = (rows.stop - rows.start) <= limit and (cols.stop - cols.start) <= limit
        if inside_rows and inside_cols and small:
            chosen[box] |= labelled[box] == number
    # Grow each mark by two pixels so its antialiased edge goes too.
    chosen = ndimage.binary_dilation(chosen, iterations=2)
    out[chosen] = np.rint(background[chosen])[:, None].astype(np.uint8)
    return out


@dataclass(frozen=True)
class Change:
    """One change that should not matter: a short name, plain words, and the function that makes it."""

    name: str
    label: str
    apply: ImageChange = field(compare=False, repr=False)


def default_changes() -> list[Change]:
    """The changes of the stress test (issue 12 and 13's list), each applied before the kit's resize."""
    return [
        Change("resolution_down", "half the resolution (fewer pixels per side)", lambda im: rescale(im, 0.5)),
        Change("resolution_up", "twice the resolution (more pixels per side)", lambda im: rescale(im, 2.0)),
        Change("grayscale", "stored as an 8-bit grayscale file instead of RGB", as_grayscale_file),
        Change("bit_depth_16", "stored as a 16-bit file (12-bit data)", as_16bit_file),
        Change("pad_square", "padded with black to a square", pad_to_square),
        Change("border", "a black border around the image", add_border),
        Change("rotate_5", "turned 5 degrees within the frame", rotate_within_frame),
        Change("contrast", "lower contrast (70% of the gray range)", lower_contrast),
        Change("window", "a narrower window (5th-95th percentile)", narrow_window),
        Change("marker_masked", "side marker and corner labels covered", mask_corner_marks),
    ]


def other_sources() -> list[Change]:
    """Ways of making the kit's own images look like files from elsewhere (each a composed change)."""
    return [
        Change("detector_16bit", "a large 16-bit detector export (2x resolution, 12-bit grayscale)",
               lambda im: as_16bit_file(rescale(im, 2.0))),
        Change("web_jpeg", "a small web copy (60% resolution, JPEG quality 35)",
               lambda im: as_jpeg_file(rescale(im, 0.6), 35)),
        Change("portrait_crop", "cropped to a 4:5 portrait frame", lambda im: crop_to_aspect(im, 0.8)),
        Change("tight_crop", "a tighter crop (the central 80%)", lambda im: central_crop(im, 0.8)),
        Change("film_border", "a scanned film with a white border", lambda im: add_border(im, 0.05, 255)),
        Change("small_square", "resized to a 256x256 square file", lambda im: resize_to(im, 256, 256)),
        # The two strongest: each class dressed in the other class's file habits.
        Change("journal_figure", "a journal figure (small portrait crop, JPEG, a black bar at one side)",
               journal_figure),
        Change("clinic_png", "a 512x512 clinic PNG with an L marker at the top right", clinic_png),
    ]


def add_side_marker(image: np.ndarray, text: str = "L") -> np.ndarray:
    """A white side-marker letter in the top-right corner, about 6 % of the height, as on the chest films."""
    from PIL import ImageDraw, ImageFont

    img = _pil(image)
    size = max(8, round(0.06 * img.height))
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(img).text((img.width - round(1.6 * size), round(0.5 * size)), text, fill=(255, 255, 255),
                             font=font)
    return np.asarray(img, dtype=np.uint8)


def journal_figure(image: np.ndarray) -> np.ndarray:
    """What many abdominal files of this dataset look like: small, portrait, compressed, with a bar."""
    small = rescale(crop_to_aspect(image, 0.8), 0.4)
    compressed = as_jpeg_file(small, 50)
    height, width = compressed.shape[:2]
    bar = np.zeros((height, max(1, round(0.1 * width)), 3), dtype=np.uint8)
    return np.concatenate([bar, compressed], axis=1)


def clinic_png(image: np.ndarray) -> np.ndarray:
    """What every chest file of this dataset looks like: 512x512, sharp, with an "L" at the top right."""
    return add_side_marker(resize_to(image, 512, 512))


def crop_to_aspect(image: np.ndarray, width_over_height: float) -> np.ndarray:
    """The largest centred crop with the given width/height ratio."""
    height, width = image.shape[:2]
    if width / height > width_over_height:
        new_w, new_h = max(1, round(height * width_over_height)), height
    else:
        new_w, new_h = width, max(1, round(width / width_over_height))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return np.ascontiguousarray(image[top:top + new_h, left:left + new_w])


def central_crop(image: np.ndarray, keep: float) -> np.ndarray:
    height, width = image.shape[:2]
    new_h, new_w = max(1, round(height * keep)), max(1, round(width * keep))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return np.ascontiguousarray(image[top:top + new_h, left:left + new_w])


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(_pil(image).resize((int(width), int(height)), Image.Resampling.BILINEAR), dtype=np.uint8)


# --- which images --------------------------------------------------------------------------------
@dataclass
class StressImages:
    """Full-size images (as the kit loads them), their files, sets and labels (None = unknown)."""

    images: list[np.ndarray]
    files: list[Path]
    sets: list[str]  # "val" or "test" (or "train") per image
    labels: list[int | None]
    duplicates_skipped: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        counts = {name: self.sets.count(name) for name in dict.fromkeys(self.sets)}
        words = {"val": "validation", "test": "TEST", "train": "training"}
        parts = ", ".join(f"{words.get(k, k)} {n}" for k, n in counts.items())
        extra = f"; {len(self.duplicates_skipped)} duplicate file(s) counted once" if self.duplicates_skipped else ""
        return f"{len(self.files)} distinct images ({parts}{extra})"


def label_from_name(path: str | Path, settings: Settings) -> int | None:
    """A label read from a file name (``abd2.png`` → abdomen, ``chest2.png`` → chest), else None.

    The paper's TEST folder is flat, its file names say the class. A name matches a class when it
    contains the class's display name, its first three letters or its folder name; a name that
    matches both classes or neither stays unlabelled.
    """
    stem = Path(path).stem.lower()
    hits = set()
    for index, (name, folder) in enumerate(zip(settings.class_names, settings.class_folders)):
        words = {name.lower(), name.lower()[:3], folder.lower()}
        if any(word and word in stem for word in words):
            hits.add(index)
    return hits.pop() if len(hits) == 1 else None


def collect_images(settings: Settings, splits: Sequence[str] = ("val", "test")) -> StressImages:
    """Load the images of ``splits`` at full size; a file whose bytes repeat an earlier one is skipped."""
    index = dataset_module.scan(settings)
    seen: set[str] = set()
    out = StressImages([], [], [], [])
    for split in splits:
        chosen = index.split(split)
        for path, label in zip(chosen.files, chosen.labels):
            digest = filetypes.file_hash(path)
            if digest in seen:
                out.duplicates_skipped.append(Path(path))
                continue
            seen.add(digest)
            out.images.append(images_module.load_image(path))
            out.files.append(Path(path))
            out.sets.append(split)
            out.labels.append(label if label is not None else label_from_name(path, settings))
    return out


# --- running the model ------------------------------------------------------------------------------
def model_scores(model: "keras.Model", images: np.ndarray) -> np.ndarray:
    """Score (sigmoid output, class 1) of each ``(N, size, size, 3)`` uint8 image.

    Kit models scale their own pixels (0-255 in); a model that expects [-1, 1] (the old layout,
    or one built elsewhere) gets InceptionV3's scaling here.
    """
    from keras.applications.inception_v3 import preprocess_input

    images = np.asarray(images)
    if not runs.takes_plain_pixels(model):
        images = preprocess_input(images.astype(np.float32))
    # Through hello_dl.inference: the originals were already answered by the evaluation.
    return inference.scores(model, images)


def model_inputs(images: Iterable[np.ndarray], settings: Settings) -> np.ndarray:
    """Full-size images → the kit's resize (and padding, if ``keep_aspect_ratio``) → uint8 batch."""
    resized = [images_module.resize_image(np.asarray(im, dtype=np.uint8), int(settings.image_size),
                                          bool(settings.keep_aspect_ratio)) for im in images]
    if not resized:
        return np.zeros((0, settings.image_size, settings.image_size, 3), dtype=np.uint8)
    return np.stack(resized)


# --- results ----------------------------------------------------------------------------------------
def _named(rows: Sequence[Any], name: str) -> Any:
    for row in rows:
        if row.name == name:
            return row
    raise KeyError(f"nothing named {name!r}; the names are {', '.join(row.name for row in rows)}")


@dataclass
class ChangeResult:
    """What one change did to the answers."""

    name: str
    label: str
    before: np.ndarray  # score of the original image (probability of class 1, not calibrated)
    after: np.ndarray  # score of the changed image
    input_changed: np.ndarray  # bool: did the model's input differ at all after the resize?
    threshold: float

    @property
    def count(self) -> int:
        return int(len(self.before))

    @property
    def flips(self) -> np.ndarray:
        return (self.before >= self.threshold) != (self.after >= self.threshold)

    @property
    def flipped(self) -> Proportion:
        return Proportion(int(self.flips.sum()), self.count)

    @property
    def flip_count(self) -> int:
        return self.flipped.count

    @property
    def flip_rate(self) -> float:
        return self.flipped.rate if self.flipped.total else 0.0

    @property
    def shifts(self) -> np.ndarray:
        return np.abs(self.after - self.before)

    @property
    def mean_shift(self) -> float:
        return float(self.shifts.mean()) if self.count else 0.0

    @property
    def max_shift(self) -> float:
        return float(self.shifts.max()) if self.count else 0.0

    @property
    def changed_count(self) -> int:
        return int(np.sum(self.input_changed))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "images": self.count, "inputs_changed": self.changed_count,
                "flips": self.flip_count, "flip_rate": self.flip_rate, "flip_rate_95ci": list(self.flipped.interval),
                "mean_score_shift": self.mean_shift, "max_score_shift": self.max_shift,
                "scores_before": self.before.tolist(), "scores_after": self.after.tolist()}


@dataclass
class StressResult:
    """Per change: flips and score shifts on the same images. ``format()`` prints a table."""

    changes: list[ChangeResult]
    files: list[Path]
    sets: list[str]
    labels: list[int | None]
    scores: np.ndarray  # of the original images
    image_size: int
    keep_aspect_ratio: bool
    description: str  # which images, in words
    max_flip_rate: float = MAX_FLIP_RATE

    def __getitem__(self, name: str) -> ChangeResult:
        return _named(self.changes, name)

    @property
    def worst(self) -> ChangeResult | None:
        return max(self.changes, key=lambda c: (c.flip_rate, c.mean_shift), default=None)

    @property
    def worst_flip_rate(self) -> float:
        return self.worst.flip_rate if self.worst else 0.0

    @property
    def passed(self) -> bool:
        """True if no change flips more than ``max_flip_rate`` of the answers."""
        return all(change.flip_rate <= self.max_flip_rate for change in self.changes)

    def summary_line(self) -> str:
        """One sentence for a summary or a model card."""
        worst = self.worst
        if worst is None:
            return "Stress test: no changes were tested."
        verdict = "within" if self.passed else "above"
        return (f"Stress test on {self.description}: the worst change ({worst.label}) flipped "
                f"{worst.flip_count} of {worst.count} answers ({worst.flip_rate:.0%}), {verdict} the "
                f"{self.max_flip_rate:.0%} limit; the mean score moved by at most "
                f"{max(c.mean_shift for c in self.changes):.2f}.")

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.description, "files": [str(f) for f in self.files], "sets": self.sets,
                "labels": self.labels, "scores": self.scores.tolist(), "image_size": self.image_size,
                "keep_aspect_ratio": self.keep_aspect_ratio, "max_flip_rate": self.max_flip_rate,
                "passed": self.passed, "worst_flip_rate": self.worst_flip_rate,
                "changes": [c.as_dict() for c in self.changes]}

    def format(self) -> str:
        mode = "padded to square" if self.keep_aspect_ratio else "stretched to square"
        lines = [f"Stress test on {self.description}; model input {self.image_size}x{self.image_size}, {mode}.",
                 "Score = the network's output for abdomen (not a calibrated probability).", ""]
        width = max([len(c.label) for c in self.changes] + [6])
        lines.append(f"{'change':<{width}}  {'inputs changed':>14}  {'flips (95% CI)':<24}  "
                     f"{'mean |score change|':>19}  {'max':>5}")
        for c in self.changes:
            low, high = c.flipped.interval
            flips = f"{c.flip_count}/{c.count} {c.flip_rate:>4.0%} ({low:.0%}-{high:.0%})"
            lines.append(f"{c.label:<{width}}  {c.changed_count:>8}/{c.count:<5}  {flips:<24}  "
                         f"{c.mean_shift:>19.3f}  {c.max_shift:>5.2f}")
        lines += ["", self.summary_line(),
                  "A flip means the answer depends on something that should not matter. No flip on these "
                  "few images does not prove the network looks at anatomy: it only rules out the cues tested here."]
        return "\n".join(lines)


def stress_arrays(model: "keras.Model", originals: Sequence[np.ndarray], settings: Settings,
                  changes: Sequence[Change] | None = None) -> list[ChangeResult]:
    """The core: apply every change to every full-size image and compare the model's scores."""
    changes = list(default_changes() if changes is None else changes)
    base_inputs = model_inputs(originals, settings)
    changed_sets = [model_inputs((change.apply(np.asarray(im)) for im in originals), settings) for change in changes]
    # One call for every image of every change: the weights are looked up (hashed) once, and an
    # input a change leaves as it was is answered from memory (hello_dl.inference).
    scores = _scores_per_set(model, [base_inputs, *changed_sets])
    before, results = scores[0], []
    for change, changed, after in zip(changes, changed_sets, scores[1:]):
        differs = np.array([not np.array_equal(a, b) for a, b in zip(base_inputs, changed)], dtype=bool)
        results.append(ChangeResult(change.name, change.label, before, after, differs, float(settings.threshold)))
    return results


def _scores_per_set(model: "keras.Model", sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`model_scores` of several equally shaped sets of model inputs, in one call; one array per set."""
    if not sets:
        return []
    scores = model_scores(model, np.concatenate(sets))
    return np.split(scores, np.cumsum([len(inputs) for inputs in sets])[:-1])


def stress_test(model: "keras.Model", settings: Settings, *, splits: Sequence[str] = ("val", "test"),
                changes: Sequence[Change] | None = None, collected: StressImages | None = None) -> StressResult:
    """Run the stress test of ``model`` on the validation and TEST images of ``settings.data_dir``.

    ``settings`` must be the run's own (image size, padding, threshold). ``changes`` defaults to
    :func:`default_changes`; pass ``collected`` (from :func:`collect_images`) to reuse loaded images.
    """
    data = collected if collected is not None else collect_images(settings, splits)
    results = stress_arrays(model, data.images, settings, changes)
    scores = results[0].before if results else model_scores(model, model_inputs(data.images, settings))
    return StressResult(results, list(data.files), list(data.sets), list(data.labels), scores,
                        int(settings.image_size), bool(settings.keep_aspect_ratio), data.describe())


# --- images from "other sources" ------------------------------------------------------------------------
@dataclass
class SourceResult:
    name: str
    label: str
    scores: np.ndarray
    labels: np.ndarray
    threshold: float

    @property
    def count(self) -> int:
        return int(len(self.labels))

    @property
    def right(self) -> Proportion:
        return Proportion(int(np.sum((self.scores >= self.threshold).astype(int) == self.labels)), self.count)

    @property
    def accuracy(self) -> float:
        return self.right.rate if self.right.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "images": self.count, "correct": self.right.count,
                "accuracy": self.accuracy, "accuracy_95ci": list(self.right.interval), "scores": self.scores.tolist()}


@dataclass
class OtherSourcesResult:
    """Accuracy on the kit's own images made to look like other sources (first row: unchanged)."""

    sources: list[SourceResult]
    description: str

    def __getitem__(self, name: str) -> SourceResult:
        return _named(self.sources, name)

    @property
    def worst(self) -> SourceResult | None:
        return min(self.sources, key=lambda s: s.accuracy, default=None)

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.description, "sources": [s.as_dict() for s in self.sources]}

    def format(self) -> str:
        width = max([len(s.label) for s in self.sources] + [6])
        lines = [f"Images made to look like other sources, from {self.description}:",
                 f"{'source':<{width}}  correct (accuracy, 95% CI)"]
        lines += [f"{s.label:<{width}}  {s.right}" for s in self.sources]
        return "\n".join(lines)


def other_sources_test(model: "keras.Model", settings: Settings, *, splits: Sequence[str] = ("val", "test"),
                       sources: Sequence[Change] | None = None,
                       collected: StressImages | None = None) -> OtherSourcesResult:
    """Accuracy of ``model`` on labelled images of ``splits`` as they are and as each other source.

    Unlabelled images (a TEST file whose name does not say its class) are left out.
    """
    data = collected if collected is not None else collect_images(settings, splits)
    keep = [i for i, label in enumerate(data.labels) if label is not None]
    originals = [data.images[i] for i in keep]
    labels = np.array([data.labels[i] for i in keep], dtype=int)
    threshold = float(settings.threshold)
    sources = list(other_sources() if sources is None else sources)
    inputs = [model_inputs(originals, settings)] + [
        model_inputs((source.apply(np.asarray(im)) for im in originals), settings) for source in sources]
    scores = _scores_per_set(model, inputs)
    rows = [SourceResult("original", "the files as they are", scores[0], labels, threshold)]
    for source, source_scores in zip(sources, scores[1:]):
        rows.append(SourceResult(source.name, source.label, source_scores, labels, threshold))
    described = f"{len(keep)} labelled images of {data.describe()}"
    return OtherSourcesResult(rows, described)


__all__ = [
    "MAX_FLIP_RATE", "Change", "add_side_marker", "clinic_png", "journal_figure", "ChangeResult", "OtherSourcesResult", "SourceResult", "StressImages",
    "StressResult", "add_border", "as_16bit_file", "as_grayscale_file", "as_jpeg_file", "central_crop",
    "collect_images", "crop_to_aspect", "default_changes", "label_from_name", "lower_contrast", "luminance",
    "mask_corner_marks", "model_inputs", "model_scores", "narrow_window", "other_sources", "other_sources_test",
    "pad_to_square", "rescale", "resize_to", "rotate_within_frame", "stress_arrays", "stress_test",
]
