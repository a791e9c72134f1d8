#!/usr/bin/env python3
"""Writes loss_golden.json: the whole GRPO loss of a 4-sequence batch, term by
term, with the arithmetic of every token spelled out in "derivation". Plain
Python floats (IEEE double), written from the formulas of dsv32-spec.md §3.2
independently of the Go code. Run from grpo/testdata: python3 gen_golden.py"""
import json, math

# One group, rewards [1, 0, 0, 1] -> mean 0.5 -> advantages [0.5, -0.5, -0.5, 0.5].
batch = {
    "seq":      [0,    0,    1,    1,    1,   2,    3],
    "loss_mask":[1,    1,    1,    1,    0,   1,    1],
    "logp":     [-1.0, -0.5, -2.0, -1.0, 0.0, -0.3, -0.2],
    "logp_old": [-1.2, -0.5, -1.9, -0.5, 0.0, -1.5, -0.25],
    "logp_ref": [-1.1, -0.7, -2.1, -1.0, 0.0, -0.4, -0.2],
    "rewards":  [1, 0, 0, 1],
    "group_size": 4,
}
adv = [0.5, -0.5, -0.5, 0.5]

cases = [
    dict(name="eq8-unbiased-opsm", eps_low=0.2, eps_high=0.2, dual_clip_c=3, beta=0.1, kl="unbiased", delta=0.25, agg="seq-mean-token-mean", max_len=0),
    dict(name="token-mean-k3-nodual-noopsm", eps_low=0.2, eps_high=0.28, dual_clip_c=0, beta=0.1, kl="k3", delta=0, agg="token-mean", max_len=0),
    dict(name="seq-mean-token-sum-k2", eps_low=0.2, eps_high=0.28, dual_clip_c=3, beta=0.05, kl="k2", delta=0.5, agg="seq-mean-token-sum", max_len=0),
    dict(name="drgrpo-k1", eps_low=0.2, eps_high=0.2, dual_clip_c=3, beta=0.2, kl="k1", delta=0, agg="seq-mean-token-sum-norm", max_len=4),
    dict(name="no-kl", eps_low=0.2, eps_high=0.2, dual_clip_c=0, beta=0, kl="none", delta=0.25, agg="seq-mean-token-mean", max_len=0),
]

def kl_term(kind, lp, old, ref, out):
    d = lp - ref
    if kind == "none":
        return 0.0, 0.0
    if kind == "k1":
        out.append(f"    k1 = l-l_ref = {d!r}, dk1 = 1")
        return d, 1.0
    if kind == "k2":
        out.append(f"    k2 = (l-l_ref)^2/2 = {d!r}^2/2 = {0.5*d*d!r}, dk2 = l-l_ref = {d!r}")
        return 0.5 * d * d, d
    u = math.exp(-d)
    k3 = u - math.log(u) - 1
    if kind == "k3":
        out.append(f"    u = exp(l_ref-l) = exp({-d!r}) = {u!r}; k3 = u - ln u - 1 = {k3!r}; dk3 = 1-u = {1-u!r}")
        return k3, 1 - u
    rho = math.exp(lp - old)
    out.append(f"    u = exp({-d!r}) = {u!r}; k3 = {k3!r}; rho = {rho!r}; D = rho*k3 = {rho*k3!r}; dD = rho*(l-l_ref) = {rho!r}*{d!r} = {rho*d!r}")
    return rho * k3, rho * d

def run(c):
    out = []
    seq, mask = batch["seq"], batch["loss_mask"]
    n = [0] * 4
    for t, s in enumerate(seq):
        n[s] += mask[t]
    S = sum(1 for x in n if x > 0)
    N = sum(n)
    out.append(f"loss tokens per sequence n = {n}, S = {S} sequences, N = {N} tokens; advantages {adv}")
    # OPSM (Eq. 9)
    keep = []
    for i in range(4):
        lr = [batch["logp_old"][t] - batch["logp"][t] for t in range(len(seq)) if seq[t] == i and mask[t]]
        m = sum(lr) / len(lr)
        on = c["delta"] not in (0, math.inf)
        k = not (on and adv[i] < 0 and m > c["delta"])
        keep.append(k)
        out.append(f"seq {i}: mean ln(old/theta) = {m!r}, A = {adv[i]}, delta = {c['delta']} -> M = {int(k)}")
    loss = 0.0
    grad = [0.0] * len(seq)
    pg_loss = kl_loss = 0.0
    clipped = pg_tokens = 0
    rho_sum = kl_sum = 0.0
    for t, i in enumerate(seq):
        if not mask[t]:
            out.append(f"token {t}: loss_mask 0 -> no loss, gradient 0")
            continue
        lp, old, ref, A = batch["logp"][t], batch["logp_old"][t], batch["logp_ref"][t], adv[i]
        if c["agg"] == "seq-mean-token-mean":
            w = 1 / (S * n[i]); ws = f"1/(S*n_{i}) = 1/({S}*{n[i]})"
        elif c["agg"] == "token-mean":
            w = 1 / N; ws = f"1/N = 1/{N}"
        elif c["agg"] == "seq-mean-token-sum":
            w = 1 / S; ws = f"1/S = 1/{S}"
        else:
            w = 1 / (S * c["max_len"]); ws = f"1/(S*max_len) = 1/({S}*{c['max_len']})"
        rho = math.exp(lp - old)
        hi, lo, cc = 1 + c["eps_high"], 1 - c["eps_low"], c["dual_clip_c"]
        if A > 0 and rho > hi:
            s, ds, why = -A * hi, 0.0, f"A>0, rho > {hi} -> clipped: s = -A*{hi}"
            clip = True
        elif A < 0 and rho < lo:
            s, ds, why = -A * lo, 0.0, f"A<0, rho < {lo} -> clipped: s = -A*{lo}"
            clip = True
        elif A < 0 and cc > 0 and rho > cc:
            s, ds, why = -A * cc, 0.0, f"A<0, rho > c = {cc} -> dual clip: s = -A*c"
            clip = False
        else:
            s, ds, why = -A * rho, -A * rho, "unclipped: s = ds = -A*rho"
            clip = False
        out.append(f"token {t} (seq {i}): l = {lp}, l_old = {old}, l_ref = {ref}; rho = exp({lp - old!r}) = {rho!r}; w = {ws} = {w!r}")
        out.append(f"    {why} = {s!r}, ds = {ds!r}")
        kl, dkl = kl_term(c["kl"], lp, old, ref, out)
        if not keep[i]:
            s, ds = 0.0, 0.0
            out.append("    masked by OPSM: surrogate and its gradient dropped, KL kept")
        else:
            pg_tokens += 1
            clipped += clip
        term = w * (s + c["beta"] * kl)
        g = w * (ds + c["beta"] * dkl)
        out.append(f"    loss += w*(M*s + beta*D) = {w!r}*({s!r} + {c['beta']}*{kl!r}) = {term!r}; dL/dl = w*(M*ds + beta*dD) = {g!r}")
        loss += term
        grad[t] = g
        pg_loss += w * s
        kl_loss += w * kl
        rho_sum += rho
        kl_sum += kl
    out.append(f"loss = {loss!r}")
    cfg = {k: c[k] for k in c if k != "name"}
    return {
        "name": c["name"],
        "config": cfg,
        "want": {
            "loss": loss, "grad": grad, "keep": keep,
            "pg_loss": pg_loss, "kl_loss": kl_loss,
            "pg_clipfrac": clipped / pg_tokens,
            "opsm_frac": sum(1 for k in keep if not k) / S,
            "is_ratio_mean": rho_sum / N,
            "kl": kl_sum / N,
        },
        "derivation": out,
    }

doc = {
    "about": "Golden values of grpo.Loss on one micro-batch that is the whole batch. Written by gen_golden.py; the derivation lists the arithmetic of every token.",
    "batch": batch,
    "advantages": adv,
    "cases": [run(c) for c in cases],
}
with open("loss_golden.json", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
