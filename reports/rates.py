"""Prices reports bill with: on-prem GPUs amortized per GPU-hour, CPU and memory per hour.

Built by the config loader from the TOML `[rates]` table (every field has a default, so an empty
table bills GPUs, CPUs and memory at 0 and reports still show hours)::

    [rates]
    currency = "USD"
    cpu_core_hour = 0.01          # per CPU core-hour a job requests
    mem_gb_hour = 0.002           # per GB-hour (GiB, 2**30 bytes) of memory a job requests

    [rates.gpu.A100]              # keyed by a substring of the GPU model name
    purchase_price = 15000        # per GPU, with its share of the server
    lifetime_years = 4
    power_w = 400
    kwh_price = 0.15
    hosting_per_month = 50
    cloud_gpu_hour = 3.1          # what bursting one GPU like this costs (forecast break-even)

    [rates.gpu.H100]
    gpu_hour = 2.5                # or give the GPU-hour price directly

    [rates.pools.inference]       # per-pool overrides
    cpu_core_hour = 0.02
    [rates.pools.inference.gpu.A100]
    gpu_hour = 1.5

Cloud (burst) cost is never computed from rates in chargeback: it is what `spend` and
`burst_instances` recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collectors.config_schema import doc

HOURS_PER_YEAR = 365.25 * 24.0
HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0
GB = 2**30  # memory is billed per GiB, written "GB" as cloud price lists do


@dataclass(frozen=True, slots=True)
class GpuRate:
    """The price of one GPU of a model (optionally in one pool)."""

    purchase_price: float = field(
        default=0.0, metadata=doc("purchase price per GPU incl. its share of the server", min=0.0))
    """Money paid for one GPU, including its share of the server around it."""
    lifetime_years: float = field(
        default=4.0, metadata=doc("years the purchase is amortized over", min=0.1))
    """Years the purchase price is spread over (straight-line amortization)."""
    power_w: float = field(
        default=0.0, metadata=doc("average power draw per GPU in watts", min=0.0))
    """Average electrical draw of one GPU with its server share, in watts."""
    kwh_price: float = field(
        default=0.0, metadata=doc("electricity price per kWh", min=0.0))
    """Price of one kWh of electricity (cooling included if you fold PUE in here)."""
    hosting_per_month: float = field(
        default=0.0, metadata=doc("rack space, network, support per GPU and month", min=0.0))
    """Hosting cost per GPU and month: rack space, network, support contracts."""
    gpu_hour: float | None = field(
        default=None, metadata=doc("price per GPU-hour; overrides the computed one", min=0.0))
    """The GPU-hour price given directly; when set, the fields above are ignored."""
    cloud_gpu_hour: float | None = field(
        default=None, metadata=doc("cloud price per GPU-hour of this model (forecast)", min=0.0))
    """What one GPU-hour of this model costs in the cloud; the forecast's break-even uses it
    (falling back to prices recorded in `burst_instances`)."""

    def __post_init__(self) -> None:
        if self.lifetime_years <= 0:
            raise ValueError("lifetime_years must be > 0")

    @property
    def per_gpu_hour(self) -> float:
        """Amortized price of one GPU-hour: purchase / lifetime + power + hosting."""
        if self.gpu_hour is not None:
            return self.gpu_hour
        amortization = self.purchase_price / (self.lifetime_years * HOURS_PER_YEAR)
        power = self.power_w / 1000.0 * self.kwh_price
        hosting = self.hosting_per_month / HOURS_PER_MONTH
        return amortization + power + hosting


@dataclass(frozen=True, slots=True)
class PoolRates:
    """Overrides for one pool; unset fields fall back to the fleet-wide rates."""

    gpu: dict[str, GpuRate] = field(
        default_factory=dict, metadata=doc("GPU rates by model for this pool"))
    """GPU rates by model name (substring match, as in `Rates.gpu`)."""
    cpu_core_hour: float | None = field(
        default=None, metadata=doc("CPU core-hour price in this pool", min=0.0))
    """CPU core-hour price in this pool."""
    mem_gb_hour: float | None = field(
        default=None, metadata=doc("memory GB-hour price in this pool", min=0.0))
    """Memory GB-hour price in this pool."""


@dataclass(frozen=True, slots=True)
class Rates:
    """Every price reports use. `Rates()` bills nothing and still reports hours."""

    currency: str = field(default="USD", metadata=doc("currency code shown in reports"))
    """ISO currency code printed beside money columns."""
    cpu_core_hour: float = field(
        default=0.0, metadata=doc("price per CPU core-hour requested", min=0.0))
    """Price per CPU core-hour a job requested (cpu_milli / 1000 cores)."""
    mem_gb_hour: float = field(
        default=0.0, metadata=doc("price per GB-hour (GiB) of memory requested", min=0.0))
    """Price per GB-hour (GiB) of memory a job requested."""
    gpu: dict[str, GpuRate] = field(
        default_factory=dict, metadata=doc("GPU rates by model (substring of the name)"))
    """GPU rates by model. A key matches a model when it is contained in the model name,
    case-insensitively (`A100` matches `NVIDIA A100-SXM4-80GB`); the longest key wins."""
    default_gpu: GpuRate = field(
        default_factory=GpuRate, metadata=doc("rate for GPU models without an entry"))
    """The rate of GPU models no key of `gpu` matches."""
    pools: dict[str, PoolRates] = field(
        default_factory=dict, metadata=doc("per-pool overrides"))
    """Per-pool overrides, by pool name."""

    def gpu_rate(self, model: str | None, pool: str | None = None) -> GpuRate:
        """The GPU rate for a model in a pool: pool override, then fleet-wide, then default."""
        if pool is not None and pool in self.pools:
            hit = _match(self.pools[pool].gpu, model)
            if hit is not None:
                return hit
        hit = _match(self.gpu, model)
        return hit if hit is not None else self.default_gpu

    def cpu_rate(self, pool: str | None = None) -> float:
        over = self.pools.get(pool) if pool is not None else None
        if over is not None and over.cpu_core_hour is not None:
            return over.cpu_core_hour
        return self.cpu_core_hour

    def mem_rate(self, pool: str | None = None) -> float:
        over = self.pools.get(pool) if pool is not None else None
        if over is not None and over.mem_gb_hour is not None:
            return over.mem_gb_hour
        return self.mem_gb_hour


def _match(table: dict[str, GpuRate], model: str | None) -> GpuRate | None:
    if not table or model is None:
        return None
    if model in table:
        return table[model]
    low = model.lower()
    keys = [k for k in table if k.lower() in low]
    if not keys:
        return None
    return table[max(keys, key=len)]
