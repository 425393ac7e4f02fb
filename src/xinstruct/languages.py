"""Language codes (ISO 639-1, with a few 639-3) and their English names, for prompts and reports.

The paper's ten languages are listed first; any other code works, named by this table
or, failing that, by the code itself.
"""

from __future__ import annotations

import re
from pathlib import Path

PAPER_LANGUAGES = ("fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur")

NAMES = {
    "fi": "Finnish", "id": "Indonesian", "th": "Thai", "tr": "Turkish", "vi": "Vietnamese",
    "bn": "Bengali", "hi": "Hindi", "sw": "Swahili", "ta": "Tamil", "ur": "Urdu",
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fr": "French", "ga": "Irish", "gl": "Galician",
    "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew", "hr": "Croatian", "ht": "Haitian Creole",
    "hu": "Hungarian", "hy": "Armenian", "ig": "Igbo", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean",
    "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian",
    "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay",
    "mt": "Maltese", "my": "Burmese", "nb": "Norwegian Bokmål", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian",
    "or": "Odia", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "qu": "Quechua",
    "ro": "Romanian", "ru": "Russian", "rw": "Kinyarwanda", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian",
    "so": "Somali", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "te": "Telugu", "tg": "Tajik",
    "tl": "Tagalog", "uk": "Ukrainian", "uz": "Uzbek", "xh": "Xhosa", "yo": "Yoruba", "zh": "Chinese",
    "zu": "Zulu",
}


def language_name(code: str) -> str:
    return NAMES.get(code, code)


def lang_from_name(path: str | Path) -> str | None:
    """The language code that ends a file name: question.sw.jsonl, sw.jsonl, questions_sw.jsonl."""
    last = re.split(r"[._-]", Path(path).name.removesuffix(".jsonl"))[-1].lower()
    return last if last in NAMES else None
