"""A small, fixed training corpus for the offline tokenizer (English prose, code, numbers, other scripts),
so that the tokenizer is the same on every machine and needs no download."""

CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Local language models run on your own machine: no server, no account, and your data stays with you.
Apple Silicon shares one pool of memory between the CPU and the GPU, so a model must fit in that pool.
When the memory is too small, the operating system starts to swap and everything becomes very slow.
A good library checks the memory before it loads a model, and refuses with a clear message instead.
The model reads a prompt, turns it into tokens, and predicts the next token again and again.
Each new token is appended to the text; the key-value cache keeps the work done on earlier tokens.
Streaming sends every new piece of text to the user as soon as it exists, not all at once at the end.
Temperature controls how random the sampling is. With a temperature of zero the model is greedy.
Top-p sampling keeps the smallest set of tokens whose probabilities add up to p; top-k keeps k tokens.
A stop sequence ends the generation as soon as the model writes it; the stop text itself is not shown.
Images are decoded, rotated according to their EXIF orientation, converted to RGB and resized.
A vision model turns an image into a grid of patches, and each patch becomes one or more tokens.
Videos are sampled into frames: two frames per second is enough for most questions about a clip.
What is the capital of France? Paris is the capital of France. What color is the sky? It is blue.
Please describe this picture. The picture shows a red square on a white background, and a blue circle.
Once upon a time there was a little robot who wanted to learn how to paint the sea and the sky.
She opened the window, looked at the mountains, and wrote a letter to her friend in the city.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 4096 3.14159 2.71828 1e-6 -17 +23 50% $19.99
Dates and times: 2026-11-23 10:45:00, Monday, November, 12:30 PM, 1999, the 21st century.
def generate(prompt: str, max_tokens: int = 256) -> str:
    tokens = tokenizer.encode(prompt)
    for _ in range(max_tokens):
        logits = model(tokens)
        tokens.append(int(logits.argmax()))
    return tokenizer.decode(tokens)
import json, os, sys  # {"role": "user", "content": "Hello!"} [1, 2, 3] (a, b) -> a + b; x = y * 2
for (let i = 0; i < n; i++) { console.log(`item ${i}`); } SELECT name FROM users WHERE id = 7;
Le renard brun rapide saute par-dessus le chien paresseux. Où est la bibliothèque ? Très bien, merci.
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München! Straße, Größe, Mädchen.
El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la estación? ¡Muy bien, gracias!
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела? Спасибо, хорошо.
敏捷的棕色狐狸跳过了懒狗。你好，世界！今天天气很好。我们一起去公园吧。机器学习和语言模型。
素早い茶色の狐がのろまな犬を飛び越える。こんにちは世界。ありがとうございます。
빠른 갈색 여우가 게으른 개를 뛰어넘습니다. 안녕하세요, 세계! 감사합니다.
Emoji and symbols: 🙂 🚀 🌍 ✨ → ← ≤ ≥ ± × ÷ ° € £ ¥ © ™ … “quotes” ‘single’ — en–dash • bullet
"""
