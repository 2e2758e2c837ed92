"""Whether this CPU runs a reduced precision natively, and one sentence to warn with where it does not.

bfloat16: oneDNN needs AVX-512 (or AMX); without it the products are emulated. int8: torchao's dynamic int8 products
need int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX on x86). Measured on a 2-core AVX2 AMD EPYC
(2026-12-01, the Multi30k recipe's model shape, 64 sentences of 16 tokens, 10 new tokens): a bf16 autocast training
step took 17 s against 0.65 s in float32 (torch's fallback bfloat16 matrix product); greedy decoding took 2.7 times
as long with bfloat16 weights and 10 times as long with int8 ones as in float32 (beam 5: 14 times).
"""

import torch

INT8_DOT_PRODUCTS = ("avx512_vnni", "avx_vnni", "amx_int8")
SLOWDOWNS = {
    "bfloat16": "training about 25 times and decoding about 3 times slower than in float32",
    "int8": "decoding 10-15 times slower than in float32",
}


def is_native(precision: str) -> bool:
    """Whether this CPU has instructions for `precision` ("bfloat16" or "int8") products."""
    if precision == "bfloat16":
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "int8":
        capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
        if capabilities.get("architecture") != "x86_64":  # unknown (older torch, other CPUs): no warning
            return True
        return any(capabilities.get(name) for name in INT8_DOT_PRODUCTS)
    raise ValueError(f"precision must be 'bfloat16' or 'int8', got {precision!r}")


def emulated_precision_warning(precision: str, what: str) -> str | None:
    """One sentence to log before `what` (e.g. "`--bf16 true`") runs `precision` products on a CPU without
    instructions for them, or None where the CPU has them."""
    if is_native(precision):
        return None
    needs = "oneDNN needs AVX-512 or AMX" if precision == "bfloat16" else "AVX512-VNNI, AVX-VNNI or AMX"
    return (
        f"{what}: this CPU has no native {precision} products ({needs}), so they are emulated: "
        f"{SLOWDOWNS[precision]} here."
    )


__all__ = ["emulated_precision_warning", "is_native"]
