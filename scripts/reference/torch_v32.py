#!/usr/bin/env python3
"""PyTorch reference for issue 19: the DeepSeek-V3.2 layout of the v32-issue19 bench recipe, written in plain
eager PyTorch (1.13, CPU, float32) so that Sparrow's `trainer bench train-step --config v32-issue19` and
`trainer bench decode --config v32-issue19 --batch N` can be compared with a reference in one run.

    scripts/reference/run_torch_v32.sh train                 # B=16 x T=256 fwd+bwd+clip+AdamW
    scripts/reference/run_torch_v32.sh decode --batch 1      # prefill "12+34=" then 256 tokens per sequence
    scripts/reference/run_torch_v32.sh decode --batch 8

(the wrapper sets the thread / allocator environment; `python3 torch_v32.py ...` works too). One JSON line
per run on stdout.

The model follows Sparrow's model/ package (graph.go, attention.go, moe.go, params.go) and
internal/bench/recipes/v32-issue19.yaml with configs.DefaultModel() for the keys the recipe leaves out:
  - embedding 300x256, untied lm_head, final RMSNorm; RMSNorm eps 1e-6 everywhere (scale only, no bias)
  - MLA: q_a 256->128, RMSNorm, q_b 128->4x(32 nope + 16 rope); kv_a 256->64+16, RMSNorm on the 64 latent
    columns only (the 16 rope-key columns are not normalised), kv_b 64->4x(32 k_nope + 32 v); interleaved
    RoPE (pairs x[2i], x[2i+1], theta 10000) on q's rope part and on the shared rope key; causal softmax
    attention with scale 1/sqrt(48); o 128->256
  - layer 0: SwiGLU FFN width 768; layers 1-3: MoE with sigmoid router s = sigmoid(x Wg^T), selection by
    s + e_score_correction_bias (a zero buffer), group-limited: 8 experts in 2 groups of 4, group score = sum
    of the group's top-2, topk_group 1 group kept, top-2 experts; gate weights 2.5 * s_i / sum(s_topk)
    (norm_topk_prob, routed_scaling_factor 2.5); routed SwiGLU experts width 256 + one shared SwiGLU expert
    width 256; aux loss off (aux_loss_alpha 0), as in the recipe
  - DSA indexer tensors (wq_b, wk, k_norm w/b, weights_proj) are allocated so the parameter count matches
    Sparrow's, but, as in Sparrow's bench (dense attention graph; indexer not trainable), they are unused
  - init: N(0, 0.1^2) for matrices, o_proj/down_proj scaled by 1/sqrt(2*layers), norm scales 1
  - loss: mean cross-entropy over B*T next-token targets (random tokens in [0, 256), as Sparrow's bench)
  - optimizer: global grad-norm clip 1.0, AdamW lr 3e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on
    matrices (embedding and lm_head included), none on norm scales
Decode caches the MLA latent (normalised c_kv, 64, plus the rotated rope key, 16, per position and layer) and
runs absorbed (MQA-mode) attention, as Sparrow's engine does; `--cache full` caches per-head k/v instead.
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CFG = dict(vocab=300, D=256, layers=4, first_dense=1, H=4, q_lora=128, kv_lora=64, dn=32, dr=16, dv=32,
           ffn=768, E=8, groups=2, topk_group=1, K=2, moe_ffn=256, shared=1, idx_heads=4, idx_dim=32,
           rope_theta=10000.0, eps=1e-6, route_scale=2.5, init_std=0.1, max_pos=4096)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(r, max_pos, theta):
    inv = theta ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)          # [r/2]
    ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv[None]      # [P, r/2]
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):
    """Interleaved RoPE on the last dim of x [..., T, r]; cos/sin [T, r/2] broadcast over leading dims."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class SwiGLU(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.gate_proj = nn.Linear(d, inner, bias=False)
        self.up_proj = nn.Linear(d, inner, bias=False)
        self.down_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Indexer(nn.Module):
    """DSA lightning-indexer tensors: present for the parameter count, unused (dense attention, as Sparrow's bench)."""
    def __init__(self, c):
        super().__init__()
        self.wq_b = nn.Linear(c['q_lora'], c['idx_heads'] * c['idx_dim'], bias=False)
        self.wk = nn.Linear(c['D'], c['idx_dim'], bias=False)
        self.k_norm = nn.LayerNorm(c['idx_dim'])
        self.weights_proj = nn.Linear(c['D'], c['idx_heads'], bias=False)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        H, dn, dr, dv = c['H'], c['dn'], c['dr'], c['dv']
        self.q_a_proj = nn.Linear(c['D'], c['q_lora'], bias=False)
        self.q_a_layernorm = RMSNorm(c['q_lora'], c['eps'])
        self.q_b_proj = nn.Linear(c['q_lora'], H * (dn + dr), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(c['D'], c['kv_lora'] + dr, bias=False)
        self.kv_a_layernorm = RMSNorm(c['kv_lora'], c['eps'])
        self.kv_b_proj = nn.Linear(c['kv_lora'], H * (dn + dv), bias=False)
        self.o_proj = nn.Linear(H * dv, c['D'], bias=False)
        self.indexer = Indexer(c)
        self.scale = 1.0 / math.sqrt(dn + dr)

    def _q_and_latent(self, x, cos, sin):
        """x [B, T, D] -> q_nope [B,H,T,dn], q_rope [B,H,T,dr] (rotated), c_kv [B,T,kvr], k_rope [B,T,dr] (rotated)."""
        c = self.c
        B, T, _ = x.shape
        H, dn, dr = c['H'], c['dn'], c['dr']
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(B, T, H, dn + dr).transpose(1, 2)
        q_nope, q_rope = q[..., :dn], rope(q[..., dn:], cos, sin)
        kva = self.kv_a_proj_with_mqa(x)
        c_kv = self.kv_a_layernorm(kva[..., :c['kv_lora']])
        k_rope = rope(kva[..., c['kv_lora']:], cos, sin)
        return q_nope, q_rope, c_kv, k_rope

    def forward(self, x, cos, sin, mask):
        """Training / prefill (MHA mode). Returns the output and the latent cache entries (c_kv, k_rope)."""
        c = self.c
        B, T, _ = x.shape
        H, dn, dv = c['H'], c['dn'], c['dv']
        q_nope, q_rope, c_kv, k_rope = self._q_and_latent(x, cos, sin)
        kv = self.kv_b_proj(c_kv).view(B, T, H, dn + dv).transpose(1, 2)
        # one contiguous [B*H, T, dn+dr] GEMM per score matrix (strided operands take a much slower bmm path)
        q = torch.cat((q_nope, q_rope), -1)
        k = torch.cat((kv[..., :dn], k_rope.unsqueeze(1).expand(B, H, T, -1)), -1)
        s = torch.baddbmm(mask.expand(B * H, T, T), q.reshape(B * H, T, -1), k.reshape(B * H, T, -1).transpose(1, 2),
                          alpha=self.scale)
        p = torch.softmax(s, dim=-1)
        o = torch.bmm(p, kv[..., dn:].reshape(B * H, T, dv)).view(B, H, T, dv).transpose(1, 2).reshape(B, T, H * dv)
        return self.o_proj(o), c_kv, k_rope

    def decode_latent(self, x, pos, cos, sin, ckv_cache, kr_cache):
        """One token per row (x [B,1,D]) at position pos, absorbed attention over the latent cache
        ckv_cache [B, L, kvr], kr_cache [B, L, dr] (filled in place at pos)."""
        c = self.c
        B = x.shape[0]
        H, dn, dv, kvr = c['H'], c['dn'], c['dv'], c['kv_lora']
        q_nope, q_rope, c_kv, k_rope = self._q_and_latent(x, cos[pos:pos + 1], sin[pos:pos + 1])
        ckv_cache[:, pos] = c_kv[:, 0]
        kr_cache[:, pos] = k_rope[:, 0]
        w = self.kv_b_proj.weight.view(H, dn + dv, kvr)
        w_uk, w_uv = w[:, :dn], w[:, dn:]                                      # [H, dn, kvr], [H, dv, kvr]
        q_lat = torch.einsum('bhd,hdk->bhk', q_nope[:, :, 0], w_uk)            # [B, H, kvr]
        ck, kr = ckv_cache[:, :pos + 1], kr_cache[:, :pos + 1]
        s = (q_lat @ ck.transpose(1, 2) + q_rope[:, :, 0] @ kr.transpose(1, 2)) * self.scale   # [B, H, L]
        o_lat = torch.softmax(s, dim=-1) @ ck                                  # [B, H, kvr]
        o = torch.einsum('bhk,hvk->bhv', o_lat, w_uv).reshape(B, 1, H * dv)
        return self.o_proj(o)

    def decode_full(self, x, pos, cos, sin, k_cache, v_cache):
        """As decode_latent, caching per-head k [B,H,L,dn+dr] and v [B,H,L,dv] instead of the latent."""
        c = self.c
        B = x.shape[0]
        H, dn, dv = c['H'], c['dn'], c['dv']
        q_nope, q_rope, c_kv, k_rope = self._q_and_latent(x, cos[pos:pos + 1], sin[pos:pos + 1])
        kv = self.kv_b_proj(c_kv).view(B, 1, H, dn + dv).transpose(1, 2)
        k_cache[:, :, pos, :dn] = kv[:, :, 0, :dn]
        k_cache[:, :, pos, dn:] = k_rope[:, 0].unsqueeze(1)
        v_cache[:, :, pos] = kv[:, :, 0, dn:]
        q = torch.cat((q_nope, q_rope), -1)                                    # [B, H, 1, dn+dr]
        s = q @ k_cache[:, :, :pos + 1].transpose(-1, -2) * self.scale
        o = (torch.softmax(s, -1) @ v_cache[:, :, :pos + 1]).transpose(1, 2).reshape(B, 1, H * dv)
        return self.o_proj(o)


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.gate = nn.Linear(c['D'], c['E'], bias=False)
        self.register_buffer('e_score_correction_bias', torch.zeros(c['E']))
        self.experts = nn.ModuleList([SwiGLU(c['D'], c['moe_ffn']) for _ in range(c['E'])])
        self.shared_experts = SwiGLU(c['D'], c['moe_ffn'] * c['shared'])

    def route(self, x):
        c = self.c
        N, E, G = x.shape[0], c['E'], c['groups']
        s = torch.sigmoid(self.gate(x))                                          # [N, E] affinities
        with torch.no_grad():
            sel = s + self.e_score_correction_bias
            if G > 1 and c['topk_group'] < G:
                gscore = sel.view(N, G, E // G).topk(2, dim=-1).values.sum(-1)       # [N, G]
                keep = gscore.topk(c['topk_group'], dim=-1).indices
                gmask = torch.ones(N, G, dtype=torch.bool).scatter_(1, keep, False)
                sel = sel.masked_fill(gmask.repeat_interleave(E // G, dim=1), float('-inf'))
            ids = sel.topk(c['K'], dim=-1).indices                               # [N, K]
        sk = s.gather(1, ids)
        w = c['route_scale'] * sk / (sk.sum(-1, keepdim=True) + 1e-20)          # [N, K]
        return ids, w

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        ids, w = self.route(x)
        K = ids.shape[1]
        flat = ids.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.c['E']).tolist()
        tok = order // K
        wflat = w.reshape(-1)[order]
        out = self.shared_experts(x)
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            t = tok[start:start + n]
            y = self.experts[e](x.index_select(0, t)) * wflat[start:start + n, None]
            out = out.index_add(0, t, y)
            start += n
        return out.view(shape)


class Layer(nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        self.input_layernorm = RMSNorm(c['D'], c['eps'])
        self.self_attn = MLA(c)
        self.post_attention_layernorm = RMSNorm(c['D'], c['eps'])
        self.mlp = MoE(c) if moe else SwiGLU(c['D'], c['ffn'])


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c['vocab'], c['D'])
        self.layers = nn.ModuleList([Layer(c, i >= c['first_dense']) for i in range(c['layers'])])
        self.norm = RMSNorm(c['D'], c['eps'])
        self.lm_head = nn.Linear(c['D'], c['vocab'], bias=False)
        cos, sin = rope_tables(c['dr'], c['max_pos'], c['rope_theta'])
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        out_scale = 1 / math.sqrt(2 * self.c['layers'])
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(0.0 if name.endswith('.bias') else 1.0)
            else:
                p.normal_(0.0, self.c['init_std'])
                if name.endswith('o_proj.weight') or name.endswith('down_proj.weight'):
                    p.mul_(out_scale)

    def forward(self, tokens):
        """Training / prefill forward: logits [B, T, V] and the per-layer latent caches (c_kv, k_rope)."""
        T = tokens.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.full((T, T), float('-inf')).triu_(1)
        x = self.embed_tokens(tokens)
        caches = []
        for layer in self.layers:
            a, c_kv, k_rope = layer.self_attn(layer.input_layernorm(x), cos, sin, mask)
            caches.append((c_kv, k_rope))
            x = x + a
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm_head(self.norm(x)), caches

    def decode_step(self, tokens, pos, caches, full):
        x = self.embed_tokens(tokens)                                          # [B, 1, D]
        for layer, (c0, c1) in zip(self.layers, caches):
            h = layer.input_layernorm(x)
            if full:
                a = layer.self_attn.decode_full(h, pos, self.cos, self.sin, c0, c1)
            else:
                a = layer.self_attn.decode_latent(h, pos, self.cos, self.sin, c0, c1)
            x = x + a
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm_head(self.norm(x))[:, 0]                                # [B, V]


def count_params(m):
    total = sum(p.numel() for p in m.parameters())
    active = 0
    K, E = m.c['K'], m.c['E']
    for name, p in m.named_parameters():
        active += p.numel() * K // E if '.mlp.experts.' in name else p.numel()
    return total, active


def sgemm_gflops(n=30):
    """Same-run machine check: float32 GEMM rate on a step shape (4096x256 by 256x768), GFLOP/s."""
    a, b = torch.randn(4096, 256), torch.randn(256, 768)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(n):
        a @ b
    return round(2 * 4096 * 256 * 768 * n / (time.perf_counter() - t0) / 1e9, 1)


def env_info():
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                interop_threads=torch.get_num_interop_threads(),
                omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                openblas_num_threads=os.environ.get('OPENBLAS_NUM_THREADS'),
                ld_preload=os.environ.get('LD_PRELOAD', ''))


def bench_train(m, args):
    B, T = args.batch_size, args.seq_len
    g = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(2):  # two alternating synthetic batches, as Sparrow's bench
        toks = torch.randint(0, min(256, m.c['vocab']), (B, T + 1), generator=g)
        batches.append((toks[:, :-1].contiguous(), toks[:, 1:].contiguous()))
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2 and '.indexer.' not in n]
    no_decay = [p for n, p in m.named_parameters() if p.dim() < 2 and '.indexer.' not in n]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=no_decay, weight_decay=0.0)],
                            lr=3e-3, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    trained = decay + no_decay

    def step(i):
        x, y = batches[i % 2]
        logits, _ = m(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        return loss.item(), float(norm)

    for i in range(args.warmup):
        step(i)
    times, losses = [], []
    for i in range(args.reps):
        t0 = time.perf_counter()
        loss, _ = step(args.warmup + i)
        times.append(time.perf_counter() - t0)
        losses.append(loss)
    ms = statistics.median(times) * 1e3
    return dict(mode='train', B=B, T=T, reps=args.reps, ms_per_step=round(ms, 1),
                tokens_per_s=round(B * T / (ms / 1e3), 1), ms_all=[round(t * 1e3, 1) for t in times],
                loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4))


@torch.inference_mode()
def bench_decode(m, args):
    c = m.c
    N, steps = args.batch, args.tokens
    prompt = torch.tensor([list(args.prompt.encode())], dtype=torch.long)
    P = prompt.shape[1]
    L = P + steps
    full = args.cache == 'full'
    gens = [torch.Generator().manual_seed(args.seed + i) for i in range(N)]
    times, prefill_times = [], []
    for rep in range(args.reps + args.warmup):
        t0 = time.perf_counter()
        # prefill the prompt once (MHA mode), then copy its cache into the N rows
        logits, lat = m(prompt)
        caches = []
        for layer, (c_kv, k_rope) in zip(m.layers, lat):
            if full:
                a = layer.self_attn
                kv = a.kv_b_proj(c_kv).view(1, P, c['H'], c['dn'] + c['dv']).transpose(1, 2)
                kc = torch.empty(N, c['H'], L, c['dn'] + c['dr'])
                vc = torch.empty(N, c['H'], L, c['dv'])
                kc[:, :, :P, :c['dn']] = kv[..., :c['dn']]
                kc[:, :, :P, c['dn']:] = k_rope.unsqueeze(1)
                vc[:, :, :P] = kv[..., c['dn']:]
                caches.append((kc, vc))
            else:
                ck = torch.empty(N, L, c['kv_lora'])
                kr = torch.empty(N, L, c['dr'])
                ck[:, :P], kr[:, :P] = c_kv, k_rope
                caches.append((ck, kr))
        last = logits[:, -1].expand(N, -1)
        t1 = time.perf_counter()
        out = []
        for pos in range(P, L):
            # row 0 greedy, the others sample at temperature 1 from their own generators (as Sparrow's bench)
            probs = torch.softmax(last, -1)
            nxt = [int(last[0].argmax())] + [int(torch.multinomial(probs[i], 1, generator=gens[i]))
                                              for i in range(1, N)]
            out.append(nxt[0])
            last = m.decode_step(torch.tensor(nxt).view(N, 1), pos, caches, full)
        t2 = time.perf_counter()
        if rep >= args.warmup:
            times.append(t2 - t1)
            prefill_times.append(t1 - t0)
    med = statistics.median(times)
    return dict(mode='decode', batch=N, prompt_tokens=P, tokens=steps, reps=args.reps, cache=args.cache,
                tokens_per_s=round(N * steps / med, 1), ms_per_step=round(med / steps * 1e3, 3),
                prefill_ms=round(statistics.median(prefill_times) * 1e3, 2),
                s_all=[round(t, 3) for t in times])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('mode', choices=['train', 'decode'])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--reps', type=int, default=None, help='timed repetitions (train 5, decode 3)')
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--batch-size', type=int, default=16, help='train: B')
    ap.add_argument('--seq-len', type=int, default=256, help='train: T')
    ap.add_argument('--batch', type=int, default=1, help='decode: sequences decoded together')
    ap.add_argument('--tokens', type=int, default=256, help='decode: tokens generated per sequence')
    ap.add_argument('--prompt', default='12+34=', help='decode: prompt (byte tokens)')
    ap.add_argument('--cache', choices=['latent', 'full'], default='latent',
                    help='decode: MLA latent cache + absorbed attention (as Sparrow) or per-head k/v')
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 5 if args.mode == 'train' else 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    m = Model(CFG)
    total, active = count_params(m)
    g0 = sgemm_gflops()
    if args.mode == 'train':
        res = bench_train(m, args)
    else:
        m.eval()
        res = bench_decode(m, args)
    res.update(params=total, active_params=active, sparrow_params=6671616, sparrow_active_params=3132672)
    res.update(sgemm_gflops_before=g0, sgemm_gflops_after=sgemm_gflops())
    res.update(env_info())
    print(json.dumps(res), flush=True)


if __name__ == '__main__':
    main()
