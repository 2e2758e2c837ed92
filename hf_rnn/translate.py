"""Translate from the command line with a saved (or Hub) model.

python -m hf_rnn.translate --model outputs/synthetic-en-ko "I am a student."
python -m hf_rnn.translate --model DIR --file sentences.txt --output out.txt --num-beams 5
echo "I am a student." | python -m hf_rnn.translate --model DIR --file -
python -m hf_rnn.translate --model DIR "I am a student." --plot-attention attention.png
"""

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_rnn  # noqa: F401  (registers the model classes)

# Fonts that can draw Hangul and Latin labels; the first one found is used for the heatmap.
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hf_rnn.translate", description=__doc__.split("\n")[0])
    parser.add_argument("sentences", nargs="*", help="Sentences to translate.")
    parser.add_argument("--model", required=True, help="Saved model folder or Hub id.")
    parser.add_argument("--file", help="Read one sentence per line from this file ('-' for stdin).")
    parser.add_argument("--output", help="Write translations here (default: stdout).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trust-remote-code", action="store_true", help="Needed only for models not made by hf_rnn.")
    parser.add_argument("--plot-attention", metavar="PNG", help="Save the attention heatmap of the first sentence.")
    args = parser.parse_args(argv)
    if not args.sentences and not args.file:
        parser.error("give sentences as arguments or --file (use '-' for stdin)")
    if args.batch_size < 1 or args.num_beams < 1:
        parser.error("--batch-size and --num-beams must be at least 1")
    return args


def read_sentences(args: argparse.Namespace) -> list[str]:
    sentences = list(args.sentences)
    if args.file:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115  (stdin must not be closed by us)
        with stream:
            sentences.extend(line.rstrip("\n") for line in stream)
    return sentences


def translate(model, tokenizer, sentences: list[str], batch_size: int, **generate_kwargs) -> Iterator[str]:
    """Batches are sorted by length so little time goes into padding; results come back in input order."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    results: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        texts = [sentences[i] if sentences[i].strip() else "" for i in indices]
        inputs = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, **generate_kwargs)
        for index, text in zip(indices, tokenizer.batch_decode(output, skip_special_tokens=True)):
            results[index] = text
    return (results[i] for i in range(len(sentences)))


def attention_heatmap(model, tokenizer, sentence: str, path: str, **generate_kwargs) -> None:
    """Greedy-translate one sentence, then draw which source tokens each output token attended to."""
    inputs = tokenizer(sentence, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        output = model.generate(**inputs, **{**generate_kwargs, "num_beams": 1})
        attention = model(**inputs, decoder_input_ids=output[:, :-1], output_attentions=True).cross_attentions
    if attention is None:
        raise ValueError("This model has no attention (attention_type='none'): nothing to plot.")
    weights = attention[0][0, 0].float().cpu()  # (target, source)
    source_tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    target_tokens = tokenizer.convert_ids_to_tokens(output[0, 1:])
    draw_heatmap(weights, source_tokens, target_tokens, path)


def draw_heatmap(weights: torch.Tensor, source_tokens: list[str], target_tokens: list[str], path: str) -> None:
    cell, font = 28, _font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 10 + max(probe.textlength(t, font=font) for t in target_tokens)
    top = 10 + max(probe.textlength(t, font=font) for t in source_tokens)
    width, height = int(left + cell * len(source_tokens) + 10), int(top + cell * len(target_tokens) + 10)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for row, target in enumerate(target_tokens):
        draw.text((5, top + row * cell + 6), target, fill="black", font=font)
        for column in range(len(source_tokens)):
            shade = int(255 * (1 - float(weights[row, column])))
            x, y = left + column * cell, top + row * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255))
    for column, source in enumerate(source_tokens):
        label = Image.new("RGBA", (int(top), cell), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((5, 6), source, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (int(left + column * cell), 0), rotated)
    image.save(path)


def _font(size: int) -> ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    model.to(args.device).eval()
    generate_kwargs = {"num_beams": args.num_beams}
    if args.max_new_tokens is not None:
        generate_kwargs["max_new_tokens"] = args.max_new_tokens
    sentences = read_sentences(args)
    output = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for translation in translate(model, tokenizer, sentences, args.batch_size, **generate_kwargs):
            print(translation, file=output, flush=output is sys.stdout)
    finally:
        if output is not sys.stdout:
            output.close()
    if args.plot_attention and sentences:
        attention_heatmap(model, tokenizer, sentences[0], args.plot_attention, **generate_kwargs)
        print(f"Attention heatmap saved to {args.plot_attention}", file=sys.stderr)


if __name__ == "__main__":
    main()
