"""Themes: the everyday light one, and high contrast for a projector in a lit
meeting room (pure black on white, strong borders and cursor, no tints)."""

from __future__ import annotations

from textual.theme import Theme

DEFAULT_THEME = "textual-light"

HIGH_CONTRAST = Theme(
    name="vidda-high-contrast",
    primary="#000000",
    secondary="#003399",
    accent="#0000CC",
    warning="#8A4B00",
    error="#B00000",
    success="#005A00",
    foreground="#000000",
    background="#FFFFFF",
    surface="#FFFFFF",
    panel="#E6E6E6",
    boost="#FFFFFF",
    dark=False,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "block-cursor-foreground": "#FFFFFF",
        "block-cursor-background": "#000000",
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-foreground": "#000000",
        "block-cursor-blurred-background": "#BFBFBF",
        "footer-key-foreground": "#0000CC",
        "footer-description-foreground": "#000000",
        "footer-background": "#E6E6E6",
        "input-cursor-background": "#000000",
        "input-cursor-foreground": "#FFFFFF",
        "border": "#000000",
        "border-blurred": "#000000",
        "scrollbar": "#000000",
    },
)
