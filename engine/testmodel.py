"""A tiny random-weight Stable-Diffusion-style image-to-image pipeline for tests and smoke runs.

It is built offline (no hub), deterministically (torch.manual_seed(0)), and saved with
`save_pretrained`, so it loads back the way a real model does:
`DiffusersEngine.load(DIR, local_files_only=True)` → `AutoPipelineForImage2Image`.
Its pictures are noise-like; what it proves is the plumbing, not the art.

Shape choices:
- the VAE has four down blocks, so it downsamples 8x like real SD VAEs (a 2-block VAE would make
  latents 4x larger and every UNet step ~60x slower on these CPUs);
- the tokenizer is a byte-level CLIP BPE with no merges: every byte is a token, so different
  prompts encode differently (transformers 5 silently ignores `vocab_file=`/`merges_file=`
  keyword arguments; we pass the vocabulary itself and check the result).
"""

from __future__ import annotations

import json
from pathlib import Path

# CLIP's byte-to-unicode table: printable stand-ins for all 256 bytes.


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs, strict=True))
    return [chr(table[b]) for b in range(256)]


BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _vocab() -> dict[str, int]:
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}  # 514 ids: BOS 512, EOS 513


def _tokenizer_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def build_test_pipeline():
    """The tiny pipeline in memory (a StableDiffusionImg2ImgPipeline with random weights)."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _vocab()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=256,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        _tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    _check_tokenizer(tokenizer)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _check_tokenizer(tokenizer) -> None:
    a = tokenizer("a cat", padding="max_length", max_length=77).input_ids
    b = tokenizer("a dog", padding="max_length", max_length=77).input_ids
    if a == b or len(a) != 77 or tokenizer.model_max_length != 77:
        raise RuntimeError("the test tokenizer does not tell prompts apart; the tiny model would be useless")


def make_test_model(folder: Path) -> Path:
    """Write the tiny pipeline to `folder` (created if missing) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_test_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


def make_test_tiny_vae(folder: Path) -> Path:
    """A random-weight AutoencoderTiny (the kind [engine] vae = "tiny" loads, like
    madebyollin/taesd) with narrow channels, written to `folder` with save_pretrained; it
    downsamples 8x like the full test VAE, so it fits the test pipeline's UNet."""
    import torch

    # From diffusers.models: the top-level name is, to a type checker, the torch-less dummy class.
    from diffusers.models import AutoencoderTiny

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    ).save_pretrained(folder, safe_serialization=True)
    return folder
