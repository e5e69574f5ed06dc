"""The simulator's instruments: a few US stocks, an ETF, a future, a forex pair and option chains.

conIds of the stocks, ETF and forex pair are IB's real ones, so examples read naturally
(``{"conId": 265598}`` is AAPL). Options are generated: AAPL and SPY each get a chain of three
expiries x ten strikes x calls and puts, which also gives tests more than a hundred distinct
instruments to exhaust a market-data-line budget with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Instrument:
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    long_name: str
    price: float  # the random walk's starting point
    min_tick: float = 0.01
    multiplier: str = ""
    expiry: str = ""  # lastTradeDateOrContractMonth
    strike: float = 0.0
    right: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stock_type: str = ""
    time_zone: str = "US/Eastern"
    under_con_id: int = 0
    under_symbol: str = ""
    market_rule_id: int = 26
    valid_exchanges: str = "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,NASDAQ,BATS,IEX"
    order_types: str = "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,LIT,LMT,MKT,MIT,STP,STPLMT,TRAIL"
    trading_hours: str = "20261123:0400-20261123:2000;20261124:0400-20261124:2000"
    liquid_hours: str = "20261123:0930-20261123:1600;20261124:0930-20261124:1600"
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_option(self) -> bool:
        return self.sec_type == "OPT"

    def matches(self, spec: dict[str, object]) -> bool:
        """Does a contract spec (IB field names, empty meaning "any") describe this instrument?"""
        checks = {
            "symbol": self.symbol,
            "secType": self.sec_type,
            "currency": self.currency,
            "localSymbol": self.local_symbol,
            "tradingClass": self.trading_class,
            "right": self.right,
            "multiplier": self.multiplier,
            "primaryExchange": self.primary_exchange,
        }
        for key, have in checks.items():
            want = spec.get(key)
            if want in (None, "", "?"):
                continue
            if key == "right":
                want = {"CALL": "C", "PUT": "P"}.get(str(want).upper(), want)
            if str(want).upper() != have.upper():
                return False
        exchange = spec.get("exchange")
        if exchange and exchange not in ("SMART", self.exchange, self.primary_exchange) and \
                str(exchange) not in self.valid_exchanges.split(","):
            return False
        expiry = spec.get("lastTradeDateOrContractMonth")
        if expiry and not self.expiry.startswith(str(expiry)):
            return False
        strike = spec.get("strike")
        if strike not in (None, "", 0, 0.0) and abs(float(str(strike)) - self.strike) > 1e-9:
            return False
        return True


_STOCKS = [
    # conId, symbol, primary exchange, long name, price, industry, category, type
    (265598, "AAPL", "NASDAQ", "APPLE INC", 190.0, "Technology", "Computers", "COMMON"),
    (272093, "MSFT", "NASDAQ", "MICROSOFT CORP", 410.0, "Technology", "Software", "COMMON"),
    (8314, "IBM", "NYSE", "INTL BUSINESS MACHINES CORP", 210.0, "Technology", "Computers",
     "COMMON"),
    (76792991, "TSLA", "NASDAQ", "TESLA INC", 250.0, "Consumer, Cyclical", "Auto Manufacturers",
     "COMMON"),
    (3691937, "AMZN", "NASDAQ", "AMAZON.COM INC", 185.0, "Communications", "Internet",
     "COMMON"),
    (4815747, "NVDA", "NASDAQ", "NVIDIA CORP", 120.0, "Technology", "Semiconductors", "COMMON"),
    (208813719, "GOOGL", "NASDAQ", "ALPHABET INC-CL A", 170.0, "Communications", "Internet",
     "COMMON"),
    (756733, "SPY", "ARCA", "SPDR S&P 500 ETF TRUST", 560.0, "Funds", "Equity Fund", "ETF"),
]

OPTION_EXPIRIES = ("20261218", "20270115", "20270319")


def _stocks() -> list[Instrument]:
    return [
        Instrument(
            con_id=con_id, symbol=sym, sec_type="STK", exchange="SMART", primary_exchange=prim,
            currency="USD", local_symbol=sym, trading_class="NMS" if prim == "NASDAQ" else sym,
            long_name=name, price=price, industry=ind, category=cat, subcategory=cat,
            stock_type=stype, market_rule_id=26,
        )
        for con_id, sym, prim, name, price, ind, cat, stype in _STOCKS
    ]


def _future() -> Instrument:
    return Instrument(
        con_id=637533641, symbol="ES", sec_type="FUT", exchange="CME", primary_exchange="CME",
        currency="USD", local_symbol="ESZ6", trading_class="ES", long_name="E-mini S&P 500",
        price=5600.0, min_tick=0.25, multiplier="50", expiry="20261218", market_rule_id=67,
        valid_exchanges="CME,QBALGO", time_zone="US/Central", under_con_id=11004968,
        under_symbol="ES", trading_hours="20261122:1700-20261123:1600",
        liquid_hours="20261123:0830-20261123:1500",
    )


def _forex() -> Instrument:
    return Instrument(
        con_id=12087792, symbol="EUR", sec_type="CASH", exchange="IDEALPRO",
        primary_exchange="IDEALPRO", currency="USD", local_symbol="EUR.USD",
        trading_class="EUR.USD", long_name="European Monetary Union Euro", price=1.08,
        min_tick=0.00005, market_rule_id=239, valid_exchanges="IDEALPRO",
        time_zone="US/Eastern", trading_hours="20261122:1715-20261123:1700",
        liquid_hours="20261122:1715-20261123:1700", aliases=("EURUSD",),
    )


def _options(under: Instrument, base_con_id: int) -> list[Instrument]:
    step = 5.0 if under.price < 300 else 10.0
    centre = round(under.price / step) * step
    strikes = [centre + step * k for k in range(-5, 5)]
    out = []
    con_id = base_con_id
    for expiry in OPTION_EXPIRIES:
        for strike in strikes:
            for right in ("C", "P"):
                con_id += 1
                local = f"{under.symbol:<6}{expiry[2:]}{right}{int(strike * 1000):08d}"
                out.append(Instrument(
                    con_id=con_id, symbol=under.symbol, sec_type="OPT", exchange="SMART",
                    primary_exchange="CBOE", currency="USD", local_symbol=local,
                    trading_class=under.symbol, long_name=under.long_name,
                    price=max(0.05, abs(under.price - strike) * (right == "C") * 0.5 + 2.0),
                    multiplier="100", expiry=expiry, strike=strike, right=right,
                    market_rule_id=32, under_con_id=under.con_id, under_symbol=under.symbol,
                    valid_exchanges="SMART,AMEX,BATS,BOX,CBOE,ISE,MIAX,PHLX",
                ))
    return out


#: conId of the first synthetic stock (SYN0001); the n-th is SYNTHETIC_BASE + n.
SYNTHETIC_BASE = 900_000_000


def synthetic_stocks(count: int) -> list[Instrument]:
    """``count`` made-up NASDAQ stocks SYN0001.. (conIds 900_000_001..), for tests and benchmarks
    that need more distinct instruments than the real universe has (e.g. 1,000 live lines)."""
    return [
        Instrument(
            con_id=SYNTHETIC_BASE + n, symbol=f"SYN{n:04d}", sec_type="STK", exchange="SMART",
            primary_exchange="NASDAQ", currency="USD", local_symbol=f"SYN{n:04d}",
            trading_class="NMS", long_name=f"SYNTHETIC STOCK {n}", price=20.0 + n % 400,
            industry="Synthetic", category="Synthetic", subcategory="Synthetic",
            stock_type="COMMON",
        )
        for n in range(1, count + 1)
    ]


class Universe:
    """Look-ups over the simulator's instruments."""

    def __init__(self, instruments: Iterable[Instrument] | None = None, *,
                 extra: int = 0) -> None:
        if instruments is None:
            stocks = _stocks()
            by_sym = {s.symbol: s for s in stocks}
            instruments = [
                *stocks, _future(), _forex(),
                *_options(by_sym["AAPL"], 700_000_000),
                *_options(by_sym["SPY"], 710_000_000),
            ]
        if extra > 0:
            instruments = [*instruments, *synthetic_stocks(extra)]
        self.instruments = list(instruments)
        self.by_con_id = {i.con_id: i for i in self.instruments}

    def __len__(self) -> int:
        return len(self.instruments)

    def get(self, con_id: int) -> Instrument | None:
        return self.by_con_id.get(con_id)

    def find(self, spec: dict[str, object]) -> list[Instrument]:
        """Resolve a contract spec as reqContractDetails does: conId wins, else field matching."""
        con_id = spec.get("conId")
        if con_id not in (None, "", 0, "0"):
            inst = self.by_con_id.get(int(str(con_id)))
            return [inst] if inst else []
        if not spec.get("symbol") and not spec.get("localSymbol"):
            return []
        return [i for i in self.instruments if i.matches(spec)]

    def search(self, pattern: str) -> list[Instrument]:
        """reqMatchingSymbols: symbols or names starting with / containing the pattern."""
        p = pattern.upper()
        seen: dict[str, Instrument] = {}
        for inst in self.instruments:
            if inst.is_option:
                continue
            if inst.symbol.startswith(p) or p in inst.long_name.upper() or p in inst.aliases:
                seen.setdefault(inst.symbol + inst.sec_type, inst)
        return list(seen.values())[:16]

    def options_of(self, under_con_id: int) -> list[Instrument]:
        return [i for i in self.instruments if i.is_option and i.under_con_id == under_con_id]
