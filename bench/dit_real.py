"""Real-size random-weight checkpoints (DiT-XL-2-512, PixArt-Sigma-XL-2-1024, SD VAE configs) and
one diffusers forward / decode each, timed, for bench/bench_dit_real.c. ~5.5 GB under OUT.
usage: python3 bench/dit_real.py [OUT=/tmp/dfa_real] [threads]"""
import sys, time
import torch, os, json
from safetensors.torch import save_file
from diffusers import DiTTransformer2DModel, PixArtTransformer2DModel, AutoencoderKL
torch.manual_seed(0)
R = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dfa_real"
if len(sys.argv) > 2:
    torch.set_num_threads(int(sys.argv[2]))
os.makedirs(R, exist_ok=True)


def timed(f):
    f()  # warm-up
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


# DiT-XL-2-512 config
dit = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                            sample_size=64, patch_size=2, num_embeds_ada_norm=1000).eval()
dit.save_pretrained(R + "/dit/transformer")
g = torch.Generator().manual_seed(1)
x = torch.randn(2, 4, 16, 16, generator=g); t = torch.tensor([999.0, 500.0]); y = torch.tensor([207, 1000])
with torch.no_grad(): out, sec = timed(lambda: dit(x, timestep=t, class_labels=y).sample)
save_file({"x": x, "t": t, "y": y, "out": out.contiguous(), "seconds": torch.tensor([sec])}, R + "/dit_io.safetensors")
del dit
pix = PixArtTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                               cross_attention_dim=1152, sample_size=128, patch_size=2, caption_channels=4096,
                               interpolation_scale=2, use_additional_conditions=False, norm_type="ada_norm_single",
                               norm_eps=1e-6).eval()
pix.save_pretrained(R + "/pixart/transformer")
x = torch.randn(2, 4, 16, 24, generator=g); t = torch.tensor([999.0, 37.0])
enc = torch.randn(2, 20, 4096, generator=g) * 0.2
mask = torch.ones(2, 20, dtype=torch.int64); mask[0, 12:] = 0
with torch.no_grad():
    out, sec = timed(lambda: pix(x, encoder_hidden_states=enc, timestep=t, encoder_attention_mask=mask).sample)
save_file({"x": x, "t": t, "enc": enc, "mask": mask, "out": out.contiguous(), "seconds": torch.tensor([sec])}, R + "/pixart_io.safetensors")
del pix
vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                    block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                    scaling_factor=0.18215).eval()
vae.save_pretrained(R + "/vae")
z = torch.randn(1, 4, 16, 12, generator=g)
with torch.no_grad(): img, sec = timed(lambda: vae.decode(z / 0.18215).sample)
save_file({"latents": z, "image": img.contiguous(), "seconds": torch.tensor([sec])}, R + "/vae_io.safetensors")
print("written under", R, "- torch threads", torch.get_num_threads())
