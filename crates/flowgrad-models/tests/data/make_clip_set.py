"""Makes a CLIP fixture set in the FORMAT.md part-C layout with the ORIGINAL openai/CLIP code.

Usage: python make_clip_set.py REF_DIR OUT_DIR
  REF_DIR: a checkout of openai/CLIP (commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6) holding clip/
  OUT_DIR: where tokenizer.json, tokens.safetensors, config.json, weights.safetensors and
           io.safetensors are written.
Needs torch, numpy, ftfy 6.3.1, regex, safetensors. Runs on CPU in f32, one thread.
The modules clip/clip.py imports for image loading and downloads (PIL, torchvision, tqdm) are
stubbed: the code exercised here (tokenize, CLIP) does not use them.
"""
import hashlib
import importlib
import json
import os
import sys
import types

import ftfy
import torch
from safetensors.torch import save_file

SEED = 4242
PERTURB_STD = 0.02
MODEL = dict(embed_dim=24, image_resolution=48, vision_layers=1, vision_width=128, vision_patch_size=16,
             context_length=77, vocab_size=49408, transformer_width=8, transformer_heads=2, transformer_layers=3)
PROMPTS = [
    "A Smiling Woman",
    "an old man's face, with GREY hair",
    "&quot;curly hair&quot; &amp;amp; a hat",
    "ﬁsh ﬂying over the ﬁeld",
    "Ｈｅｌｌｏ　ｗｏｒｌｄ",
    "C’est la vie — naïve café",
    "2 cats & 13 dogs",
    "tab\there\nand there",
    "emoji 🙂 face",
    "<|endoftext|> early end",
    "Ã©tÃ© en France",
    "b " * 80,
]
TEXT_ROWS = [0, 4, 9, 11]


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def load_reference(ref_dir):
    class Anything:
        def __init__(self, *a, **k):
            pass
    stub("PIL"); stub("PIL.Image", BICUBIC=3, Image=Anything)
    stub("torchvision"); stub("torchvision.transforms", Compose=Anything, Resize=Anything, CenterCrop=Anything,
                                ToTensor=Anything, Normalize=Anything, InterpolationMode=types.SimpleNamespace(BICUBIC=3))
    stub("tqdm", tqdm=Anything)
    sys.path.insert(0, ref_dir)
    return (importlib.import_module("clip.clip"), importlib.import_module("clip.model"),
            importlib.import_module("clip.simple_tokenizer"))


def main(ref_dir, out_dir):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    clip, model_py, simple = load_reference(ref_dir)
    tok = clip._tokenizer
    os.makedirs(out_dir, exist_ok=True)

    prompts = []
    for text in PROMPTS:
        cleaned = simple.whitespace_clean(simple.basic_clean(text)).lower()
        pieces = tok.pat.findall(cleaned)
        bpe_strings = [s for p in pieces for s in tok.bpe("".join(tok.byte_encoder[b] for b in p.encode("utf-8"))).split(" ")]
        bpe_ids = tok.encode(text)
        tokens = clip.tokenize([text], truncate=True)[0]
        try:
            clip.tokenize([text])
            truncated = False
        except RuntimeError:
            truncated = True
        prompts.append(dict(text=text, cleaned=cleaned, pieces=pieces, bpe_strings=bpe_strings, bpe_ids=bpe_ids,
                            truncated=truncated, eot_position=int(tokens.argmax()), tokens=tokens.tolist()))
    all_tokens = clip.tokenize(PROMPTS, truncate=True)
    save_file({"tokens": all_tokens.contiguous()}, os.path.join(out_dir, "tokens.safetensors"))
    bpe_path = os.path.join(ref_dir, "clip", "bpe_simple_vocab_16e6.txt.gz")
    tokenizer = dict(context_length=77, sot=tok.encoder["<|startoftext|>"], eot=tok.encoder["<|endoftext|>"], pad=0,
                     ftfy_version=ftfy.__version__, bpe_file="clip/bpe_simple_vocab_16e6.txt.gz",
                     bpe_sha256=hashlib.sha256(open(bpe_path, "rb").read()).hexdigest(), prompts=prompts)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, sort_keys=True, ensure_ascii=False, indent=1)

    torch.manual_seed(SEED)
    model = model_py.CLIP(**MODEL).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * PERTURB_STD)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "weights.safetensors"))

    text = all_tokens[TEXT_ROWS]
    image = torch.randn(3, 3, MODEL["image_resolution"], MODEL["image_resolution"], requires_grad=True)
    image_features = model.encode_image(image)
    text_features = model.encode_text(text)
    cos = (image_features / image_features.norm(dim=-1, keepdim=True)) @ (text_features / text_features.norm(dim=-1, keepdim=True)).t()
    cos.sum().backward()
    logits_per_image = model(image.detach(), text)[0]
    io = dict(image=image.detach(), text=text, image_features=image_features.detach(), text_features=text_features.detach(),
              cos=cos.detach(), grad_image=image.grad, logits_per_image=logits_per_image.detach())
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
    assert torch.allclose(logits_per_image / model.logit_scale.exp(), cos, rtol=1e-5, atol=1e-6)

    config = {"model": {**MODEL, "vision_heads(derived=vision_width//64)": MODEL["vision_width"] // 64},
              "seed": SEED, "perturb_std": PERTURB_STD, "num_params": sum(p.numel() for p in model.parameters()),
              "state_dict_keys_in_order": list(state), "text_prompts": [PROMPTS[i] for i in TEXT_ROWS],
              "text_rows_from_tokens": TEXT_ROWS}
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, sort_keys=True, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
