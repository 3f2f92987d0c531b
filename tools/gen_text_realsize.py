#!/usr/bin/env python3
"""Real-size random text encoders for bench/bench_text: a CLIP-L-shaped CLIPTextModelWithProjection
(768 wide, 12 layers, 77 tokens) and a T5 encoder with T5-base widths (768, 12 heads of 64,
gated-GELU, 8 layers, 512 tokens), with transformers' outputs. usage:
  python3 tools/gen_text_realsize.py DIR && build/bench_text DIR      (~0.8 GB in DIR)"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel
torch.manual_seed(0)
out = sys.argv[1] if len(sys.argv) > 1 else '/tmp/text_realsize'
os.makedirs(out + '/clip', exist_ok=True)
os.makedirs(out + '/t5', exist_ok=True)
os.chdir(out)
c = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, eos_token_id=2)).eval()
c.config.save_pretrained('clip')
save_file({k: v.contiguous() for k, v in c.state_dict().items() if 'position_ids' not in k}, 'clip/model.safetensors')
ids = torch.randint(0, 49406, (1, 77)); ids[0, 0] = 49406; ids[0, 30] = 49407; ids[0, 31:] = 49407
with torch.no_grad():
    o = c(ids, output_hidden_states=True)
ref = {'clip.ids': ids[0].int(), 'clip.hm2': o.hidden_states[-2][0], 'clip.te': o.text_embeds[0]}
t = T5EncoderModel(T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=8, num_heads=12,
    feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128)).eval()
t.config.save_pretrained('t5')
sd = {k: v.contiguous() for k, v in t.state_dict().items()}
sd.pop('encoder.embed_tokens.weight', None)
save_file(sd, 't5/model.safetensors')
tids = torch.randint(0, 32100, (1, 512)); mask = torch.ones(1, 512, dtype=torch.long); mask[0, 300:] = 0
with torch.no_grad():
    ref['t5.out'] = t(tids).last_hidden_state[0]
    ref['t5.outm'] = t(tids, attention_mask=mask).last_hidden_state[0]
ref['t5.ids'] = tids[0].int(); ref['t5.mask'] = mask[0].int()
save_file({k: v.contiguous() for k, v in ref.items()}, 'ref.safetensors')
print('ok')
