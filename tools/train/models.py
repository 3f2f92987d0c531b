"""Model configurations (presets) and constructors for dfa's own FLUX-layout model.

Everything is a stock diffusers / transformers class, so the exported folder loads with
diffusers' FluxPipeline and takes exactly the code paths a real FLUX checkpoint takes:
  transformer     FluxTransformer2DModel  (double-stream + single-stream blocks, RoPE 3 axes)
  vae             AutoencoderKL, 16 latent channels, 4 levels = 8x down-sampling, mid attention,
                  no quant convs (as FLUX's VAE)
  text_encoder    CLIPTextModel (pooled output at the first <|endoftext|> -> pooled_projections)
  text_encoder_2  T5EncoderModel (gated-gelu, relative position buckets -> encoder_hidden_states)

Decisions (see README.md for the reasons):
  * head dim 64 everywhere in the transformer (the D=64 attention path), axes_dims_rope sum 64;
  * guidance_embeds = False (FLUX.1-schnell style: no distilled guidance to train); classifier
    free guidance instead, through FluxPipeline's true_cfg_scale with negative_prompt "",
    learnt by dropping 10% of the captions;
  * text encoders random-init and trained jointly with the transformer (they are tiny);
  * adaLN-Zero init: every modulation linear and the final projection start at zero.
"""
import copy
import os

import torch

import tokenizer as tok_mod

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = os.path.join(HERE, "tokenizers")

PRESETS = {
    # the model the project ships: 512x512 images -> 64x64x16 latents -> 1024 tokens of 64
    "base": {
        "image_size": 512,
        "vae": {"block_out_channels": [32, 64, 128, 128], "layers_per_block": 1, "norm_num_groups": 32},
        "transformer": {"num_layers": 3, "num_single_layers": 6, "num_attention_heads": 4,
                        "attention_head_dim": 64, "axes_dims_rope": [16, 24, 24]},
        "clip": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 2},
        "t5": {"d_model": 128, "d_kv": 64, "d_ff": 512, "num_layers": 2, "num_heads": 2},
        "t5_max_length": 64,
    },
    # CPU smoke test: same structure, 64x64 images -> 8x8 latents -> 16 tokens
    "tiny": {
        "image_size": 64,
        "vae": {"block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8},
        "transformer": {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2,
                        "attention_head_dim": 64, "axes_dims_rope": [16, 24, 24]},
        "clip": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 1},
        "t5": {"d_model": 64, "d_kv": 64, "d_ff": 128, "num_layers": 1, "num_heads": 1},
        "t5_max_length": 32,
    },
}

LATENT_CHANNELS = 16
SCHEDULER = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
             "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}


def preset(name):
    return copy.deepcopy(PRESETS[name])


def build_vae(cfg, scaling_factor=1.0, shift_factor=0.0):
    from diffusers import AutoencoderKL
    v = cfg["vae"]
    n = len(v["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(v["block_out_channels"]), layers_per_block=v["layers_per_block"],
        norm_num_groups=v["norm_num_groups"], act_fn="silu", sample_size=cfg["image_size"],
        scaling_factor=scaling_factor, shift_factor=shift_factor, force_upcast=False,
        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True)


def build_transformer(cfg):
    from diffusers import FluxTransformer2DModel
    t = cfg["transformer"]
    assert sum(t["axes_dims_rope"]) == t["attention_head_dim"]
    m = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, out_channels=None,
        num_layers=t["num_layers"], num_single_layers=t["num_single_layers"],
        attention_head_dim=t["attention_head_dim"], num_attention_heads=t["num_attention_heads"],
        joint_attention_dim=cfg["t5"]["d_model"], pooled_projection_dim=cfg["clip"]["hidden_size"],
        guidance_embeds=False, axes_dims_rope=tuple(t["axes_dims_rope"]))
    return m


def init_transformer(m):
    """DiT-style init: xavier linears, N(0, 0.02) timestep/text MLPs, adaLN-Zero."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
    for mod in m.time_text_embed.modules():
        if isinstance(mod, torch.nn.Linear):
            torch.nn.init.normal_(mod.weight, std=0.02)
    zero = [b.norm1.linear for b in m.transformer_blocks] + [b.norm1_context.linear for b in m.transformer_blocks]
    zero += [b.norm.linear for b in m.single_transformer_blocks] + [m.norm_out.linear, m.proj_out]
    for lin in zero:
        torch.nn.init.zeros_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
    return m


def build_clip(cfg):
    from transformers import CLIPTextConfig, CLIPTextModel
    vocab, ids = tok_mod.info(os.path.join(TOKENIZERS, "tokenizer"))
    c = cfg["clip"]
    conf = CLIPTextConfig(
        vocab_size=vocab, hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        max_position_embeddings=tok_mod.CLIP_MAX_LEN, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attention_dropout=0.0, projection_dim=c["hidden_size"],
        bos_token_id=ids[tok_mod.CLIP_BOS], eos_token_id=ids[tok_mod.CLIP_EOS], pad_token_id=ids[tok_mod.CLIP_EOS])
    assert conf.eos_token_id != 2, "eos id 2 selects CLIP's legacy argmax pooling"
    return CLIPTextModel(conf)


def build_t5(cfg):
    from transformers import T5Config, T5EncoderModel
    vocab, ids = tok_mod.info(os.path.join(TOKENIZERS, "tokenizer_2"))
    c = cfg["t5"]
    conf = T5Config(
        vocab_size=vocab, d_model=c["d_model"], d_kv=c["d_kv"], d_ff=c["d_ff"], num_layers=c["num_layers"],
        num_heads=c["num_heads"], relative_attention_num_buckets=32, relative_attention_max_distance=128,
        dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
        use_cache=False, tie_word_embeddings=False,
        pad_token_id=ids["<pad>"], eos_token_id=ids["</s>"], decoder_start_token_id=ids["<pad>"])
    return T5EncoderModel(conf)


def load_tokenizers():
    from transformers import CLIPTokenizer, T5TokenizerFast
    return (CLIPTokenizer.from_pretrained(os.path.join(TOKENIZERS, "tokenizer")),
            T5TokenizerFast.from_pretrained(os.path.join(TOKENIZERS, "tokenizer_2")))


def build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler
    return FlowMatchEulerDiscreteScheduler(**SCHEDULER)


def count(m):
    return sum(p.numel() for p in m.parameters())
