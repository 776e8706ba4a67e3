"""A varied text corpus for tokenizer parity tests (Python and C encoders against tiktoken)."""

from __future__ import annotations

import random
import unicodedata


def pseudo_random_unicode(seed: int, length: int) -> str:
    """Characters drawn from many scripts and planes (no surrogates), deterministic per seed."""
    rng = random.Random(seed)
    ranges = [
        (0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3), (0xFE00, 0xFE0F), (0x1F300, 0x1FAFF), (0x200B, 0x200D), (0x10000, 0x1007F),
    ]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(length))


def random_unicode(seed: int, length: int) -> str:
    """Code points drawn uniformly from every plane that has assigned characters (no surrogates)."""
    rng = random.Random(seed)
    planes = [0, 1, 2, 3, 14]
    out = []
    while len(out) < length:
        cp = (rng.choice(planes) << 16) | rng.randrange(0x10000)
        if not 0xD800 <= cp < 0xE000:
            out.append(chr(cp))
    return "".join(out)


def random_assigned(seed: int, length: int) -> str:
    """Assigned (in this Python's Unicode) characters of all kinds, with spaces and newlines mixed in."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < length:
        roll = rng.random()
        if roll < 0.15:
            out.append(rng.choice([" ", " ", "\n", "\t", "\r\n", "  ", "'s", "'LL"]))
            continue
        cp = rng.randrange(0x110000) if roll < 0.4 else rng.randrange(0x3000)
        if not 0xD800 <= cp < 0xE000 and unicodedata.category(chr(cp)) != "Cn":
            out.append(chr(cp))
    return "".join(out)


CONTRACTIONS = " ".join(
    f"{word}'{suffix}"
    for word in ["it", "IT", "They", "we", "O"]
    for suffix in ["s", "S", "t", "T", "re", "RE", "Re", "rE", "ve", "VE", "vE", "m", "M", "ll", "LL", "lL", "d", "D",
                   "ſ", "x", "", "st", "rex", "s'"]
)

CORPUS = {
    "ascii prose": "The quick brown fox jumps over the lazy dog. It wasn't me, they'd said; we'll see.",
    "contractions": CONTRACTIONS + " 's 'S 'll' ''d don't DON'T Don'T O'Neil x'1 é's",
    "accents": "naïve café résumé façade über Straße Ångström señor jalapeño œuvre São Paulo Kraków ÉCOLE Éa",
    "combining marks": "e\u0301 E\u0301A a\u0308\u0304 \u0301\u0301x \u0301 \u20dd\u20dd 9\u0301 \u0915\u094d\u0937 "
                       "Z\u0351\u0352\u0353a\u0300",
    "cjk": "你好，世界！今天天气很好。日本語のテキストとカタカナ、ひらがな。",
    "hangul": "한국어 문장도 있습니다. \u1100\u1161\u11a8 ㄱㄴㄷ",
    "emoji": "👍🏽 🎉 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍💻 ❤️‍🔥 🇫🇷🇯🇵 😀😃😄 1️⃣ #️⃣ 👋🏻👋🏼👋🏾",
    "code": "def f(x):\n    if x > 0:\n        return [i ** 2 for i in range(x)]\n\treturn None\n\n\nclass A:\n    pass\n"
            "int main(void) { return a->b[0] /* c */ // d\n}\r\n  \t  x = y;  \n",
    "crlf": "line one\r\nline two\r\n\r\n\r\nthree\r\r\n\n\r x \r\n  \r\n y\r",
    "whitespace": "a" + " " * 37 + "b\n\n\n\n   \n\t\t  \r\n\r\n" + " " * 200 + "\n" + "\t" * 17 + "end   ",
    "trailing spaces": "trailing   ",
    "unicode spaces": "a\u00a0b\u3000c\u2003\u2003d \u00a0 e\u2028f\u0085g \u200b h\u1680i\u202f",
    "numbers": " ".join(str(10**k + 7 * k) for k in range(30)) + " 3.14159 -42 1,000,000 0x1F 1e-10 007 ²³ ١٢٣٤ ⅫⅣ",
    "punctuation": "!!!??? ... --- *** ((( ))) {}[]<> @#$%^&*~` ''' \"\"\" ;;; ::: ,,, ___ ===>>> <<< !/\n// ?\r\n/",
    "mixed scripts": "Hello мир 世界 مرحبا שלום नमस्ते γειά σου こんにちは 123abc٤٥٦ ǅungla ǈ ᾈ",
    "special text": "<|start|>user<|message|>hi<|end|><|endoftext|><|channel|>final<|return|>",
    "urls": "https://example.com/path?query=1&b=two#frag mailto:a.b@c.de C:\\Windows\\System32",
    "random planes": random_unicode(seed=1234, length=4000),
    "random assigned": random_assigned(seed=7, length=4000),
    "random scripts": pseudo_random_unicode(seed=1234, length=3000),
    "random bmp": pseudo_random_unicode(seed=99, length=1500),
    "empty": "",
    "single space": " ",
    "single newline": "\n",
}
