#!/usr/bin/env python3
"""Draws the DoctorGLM application icon (a white medical cross on a teal rounded square)
and writes every size the Tauri bundles need into icons/. Needs Pillow (pip install pillow).
Run again only when the design changes; the outputs are committed."""
from pathlib import Path
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "icons"


def draw(size: int) -> Image.Image:
    scale = 4  # draw large, shrink for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    pad = s // 16
    d.rounded_rectangle([pad, pad, s - pad, s - pad], radius=s // 5, fill=(14, 116, 144, 255))
    arm = s // 6
    c = s // 2
    length = s * 3 // 10
    white = (255, 255, 255, 255)
    d.rounded_rectangle([c - arm // 2, c - length, c + arm // 2, c + length], radius=arm // 4, fill=white)
    d.rounded_rectangle([c - length, c - arm // 2, c + length, c + arm // 2], radius=arm // 4, fill=white)
    return img.resize((size, size), Image.LANCZOS)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    draw(32).save(OUT / "32x32.png")
    draw(128).save(OUT / "128x128.png")
    draw(256).save(OUT / "128x128@2x.png")
    draw(512).save(OUT / "icon.png")
    big = draw(256)
    big.save(OUT / "icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    draw(512).save(OUT / "icon.icns")


if __name__ == "__main__":
    main()
