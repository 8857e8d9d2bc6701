"""lm-eval's Hugging Face model, scoring all continuations of one context from a single pass over it.

A multiple-choice task asks for the log-likelihood of each choice after the same prompt; lm-eval's HFLM
runs prompt + choice once per choice (its own source marks the shared-context batching as a TODO). Here
the prompt runs once, without the LM head, into a KV cache that every choice then continues from, so a
four-choice document costs one prompt and four short continuations. The requests, their tokenization,
truncation and the returned (log-likelihood, is-greedy) pairs are HFLM's: only the arithmetic is
shared. Requests that would be truncated, and non-causal models, go to HFLM unchanged."""
from __future__ import annotations

import inspect

import torch
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm


class SharedPrefixHFLM(HFLM):
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        results: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = {}
        whole = []  # requests HFLM would truncate: HFLM scores them itself
        for i, (_, ctx, cont) in enumerate(requests):
            if len(ctx) + len(cont) > self.max_length or not ctx or not cont:
                whole.append(i)
            else:
                groups.setdefault(tuple(ctx), []).append(i)
        if whole:
            for i, r in zip(whole, super()._loglikelihood_tokens([requests[i] for i in whole], disable_tqdm,
                                                                  override_bs)):
                results[i] = r
        bar = tqdm(total=len(requests) - len(whole), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests (shared prompts)")
        for ctx, members in groups.items():
            for i, r in zip(members, self._score_continuations(list(ctx), [requests[i][2] for i in members])):
                results[i] = r
                self.cache_hook.add_partial("loglikelihood", requests[i][0], r)
            bar.update(len(members))
        bar.close()
        return results

    @torch.no_grad()
    def _score_continuations(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
        model = self.model
        params = inspect.signature(model.forward).parameters
        # transformers 5.x names the KV cache `cache`; `past_key_values` (5.0's name) warns, and goes in 5.40
        key = "cache" if "cache" in params else "past_key_values"
        cache = None
        if len(ctx) > 1:  # the prompt but its last token, which predicts each continuation's first token
            kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
            out = model(torch.tensor([ctx[:-1]], device=self.device), use_cache=True, **kw)
            cache = out["cache"] if "cache" in out else out["past_key_values"]  # the attribute warns like the kwarg
            cache.batch_repeat_interleave(len(conts))
        width = max(len(c) for c in conts)
        # right padding: a real token never attends to the pads after it, so no attention mask is needed
        rows = [[ctx[-1]] + c[:-1] + [c[-1]] * (width - len(c)) for c in conts]
        logits = model(torch.tensor(rows, device=self.device), use_cache=cache is not None, **{key: cache}).logits
        logp = torch.nn.functional.log_softmax(logits, dim=-1)
        out = []
        for j, c in enumerate(conts):
            target = torch.tensor(c, device=logp.device)
            lp = logp[j, :len(c)]
            out.append((float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())))
        return out
