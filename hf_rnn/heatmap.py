"""Attention heatmaps of the translator: which source tokens each output token attended to (Luong et al., 2015).

Used by `python -m hf_rnn.translate --plot-attention PNG`. Labels are drawn with the first font found in
`FONT_CANDIDATES` that can draw Hangul and Latin (install e.g. `fonts-nanum` for Korean), else PIL's default font.
"""

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
CELL = 28  # pixels per attention weight


def attention_heatmap(model, tokenizer, sentence: str, path: str, **generate_kwargs) -> None:
    """
    Greedy-translate `sentence`, then save to `path` (PNG) a grid of the cross-attention weights: one row per output
    token, one column per source token, darker = more attention.

    Raises:
        ValueError: the model has no attention (`attention_type="none"`).
    """
    inputs = tokenizer(sentence, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        output = model.generate(**inputs, **{**generate_kwargs, "num_beams": 1})
        attention = model(**inputs, decoder_input_ids=output[:, :-1], output_attentions=True).cross_attentions
    if attention is None:
        raise ValueError("This model has no attention (attention_type='none'): nothing to plot.")
    weights = attention[0][0, 0].float().cpu()  # (target, source)
    draw_heatmap(weights, _labels(tokenizer, inputs["input_ids"][0]), _labels(tokenizer, output[0, 1:]), path)


def draw_heatmap(weights: torch.Tensor, source_tokens: list[str], target_tokens: list[str], path: str) -> None:
    """`weights` (target, source) in [0, 1] as a blue grid, target labels on the left, source labels on top."""
    font = _font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 10 + max(probe.textlength(t, font=font) for t in target_tokens)
    top = 10 + max(probe.textlength(t, font=font) for t in source_tokens)
    width, height = int(left + CELL * len(source_tokens) + 10), int(top + CELL * len(target_tokens) + 10)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for row, target in enumerate(target_tokens):
        draw.text((5, top + row * CELL + 6), target, fill="black", font=font)
        for column in range(len(source_tokens)):
            shade = int(255 * (1 - float(weights[row, column])))
            x, y = left + column * CELL, top + row * CELL
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=(shade, shade, 255))
    for column, source in enumerate(source_tokens):
        label = Image.new("RGBA", (int(top), CELL), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((5, 6), source, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (int(left + column * CELL), 0), rotated)
    image.save(path)


def _labels(tokenizer, ids: torch.Tensor) -> list[str]:
    """Each token as the text it stands for (a byte-level piece of a longer character shows as U+FFFD)."""
    return [tokenizer.decode([index]) for index in ids.tolist()]


def _font(size: int) -> ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


__all__ = ["attention_heatmap", "draw_heatmap"]
