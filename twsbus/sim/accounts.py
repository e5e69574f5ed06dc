"""The simulated accounts: cash, positions with IB-style average cost, realized and daily PnL.

One ``Account`` per code in ``SimConfig.accounts``, each seeded with cash and a small book so that
positions and portfolio requests have something to show. Positions are marked to the market
model's last price; nothing here steps the market. Fills arrive through ``Accounts.apply_fill``
(called by the order book); every change is announced to the ``on_change`` listeners, which is how
subscribed sessions (positions, account updates) hear about fills at once instead of at their next
periodic refresh. The numbers follow IB's conventions: ``avg_cost`` includes the multiplier and
opening commissions, realized PnL is net of closing commissions, and daily PnL is measured against
the previous close. Every instrument, futures included, is carried at full notional like stock:
the simulator does not model variation margin or multi-currency cash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from twsbus.sim.universe import Instrument, Universe

if TYPE_CHECKING:
    from twsbus.sim.market import Market

STARTING_CASH = 1_000_000.0
#: (conId, quantity, average price) of the book every account starts with.
STARTING_BOOK = ((265598, 100.0, 180.0), (756733, 50.0, 540.0))
BASE_CURRENCY = "USD"
# Margin model: flat fractions of gross position value (Reg T-like, not risk-based).
INIT_MARGIN = 0.30
MAINT_MARGIN = 0.25
REG_T_MARGIN = 0.50
INTRADAY_LEVERAGE = 4.0

#: Tags reqAccountSummary understands (IB's AccountSummaryTags.AllTags), in TWS's order.
SUMMARY_TAGS = (
    "AccountType", "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash",
    "BuyingPower", "EquityWithLoanValue", "PreviousDayEquityWithLoanValue",
    "GrossPositionValue", "RegTEquity", "RegTMargin", "SMA", "InitMarginReq", "MaintMarginReq",
    "AvailableFunds", "ExcessLiquidity", "Cushion", "FullInitMarginReq", "FullMaintMarginReq",
    "FullAvailableFunds", "FullExcessLiquidity", "LookAheadNextChange", "LookAheadInitMarginReq",
    "LookAheadMaintMarginReq", "LookAheadAvailableFunds", "LookAheadExcessLiquidity",
    "HighestSeverity", "DayTradesRemaining", "Leverage",
)
#: The per-currency cash tags $LEDGER relays.
LEDGER_TAGS = (
    "Currency", "CashBalance", "TotalCashBalance", "AccruedCash", "StockMarketValue",
    "OptionMarketValue", "FutureOptionValue", "FuturesPNL", "NetLiquidationByCurrency",
    "UnrealizedPnL", "RealizedPnL", "ExchangeRate", "NetDividend", "AccountOrGroup",
    "RealCurrency",
)

Row = tuple[str, str, str]  # (tag, value, currency)


@dataclass
class Position:
    inst: Instrument
    qty: float
    avg_cost: float  # per contract, multiplier and opening commissions included (IB's avgCost)
    realized: float = 0.0  # today's, net of closing commissions
    day_cost: float = 0.0  # value at the previous close plus today's net purchases
    day_commission: float = 0.0

    @property
    def con_id(self) -> int:
        return self.inst.con_id


@dataclass
class Account:
    code: str
    cash: float
    prev_day_equity: float = 0.0
    positions: dict[int, Position] = field(default_factory=dict)


def multiplier(inst: Instrument) -> float:
    try:
        return float(inst.multiplier) if inst.multiplier else 1.0
    except ValueError:
        return 1.0


class Accounts:
    """The accounts ``codes`` over the instruments of ``universe``, marked to ``market``."""

    def __init__(self, codes: Iterable[str], universe: Universe, market: Market) -> None:
        self.universe = universe
        self.market = market
        self.by_code: dict[str, Account] = {}
        #: Called as ``fn(account, position)`` after every fill.
        self.on_change: list[Callable[[Account, Position], None]] = []
        for code in codes:
            self.by_code[code] = self._seed(code)

    def _seed(self, code: str) -> Account:
        acct = Account(code, STARTING_CASH)
        for con_id, qty, price in STARTING_BOOK:
            inst = self.universe.get(con_id)
            if inst is None:
                continue
            mult = multiplier(inst)
            close = self.market.quote(con_id).close
            acct.positions[con_id] = Position(inst, qty, price * mult,
                                              day_cost=qty * close * mult)
        acct.prev_day_equity = acct.cash + sum(p.day_cost for p in acct.positions.values())
        return acct

    # ---- look-ups ------------------------------------------------------------------------

    @property
    def codes(self) -> list[str]:
        return list(self.by_code)

    def get(self, code: str) -> Account | None:
        """The account a request names; an empty code means the only account, if there is one
        (TWS ignores the code for single-account logins)."""
        if not code and len(self.by_code) == 1:
            return next(iter(self.by_code.values()))
        return self.by_code.get(code)

    # ---- valuation -----------------------------------------------------------------------

    def price(self, pos: Position) -> float:
        return self.market.quote(pos.con_id).last

    def market_value(self, pos: Position) -> float:
        return pos.qty * self.price(pos) * multiplier(pos.inst)

    def unrealized(self, pos: Position) -> float:
        return self.market_value(pos) - pos.qty * pos.avg_cost

    def daily(self, pos: Position) -> float:
        return self.market_value(pos) - pos.day_cost - pos.day_commission

    def pnl(self, acct: Account) -> tuple[float, float, float]:
        """(daily, unrealized, realized) for the whole account."""
        daily = unrealized = realized = 0.0
        for pos in acct.positions.values():
            daily += self.daily(pos)
            unrealized += self.unrealized(pos)
            realized += pos.realized
        return round(daily, 2), round(unrealized, 2), round(realized, 2)

    def pnl_single(self, acct: Account, con_id: int) -> tuple[float, float, float, float, float]:
        """(position, daily, unrealized, realized, market value) for one instrument."""
        pos = acct.positions.get(con_id)
        if pos is None:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        return (pos.qty, round(self.daily(pos), 2), round(self.unrealized(pos), 2),
                round(pos.realized, 2), round(self.market_value(pos), 2))

    def numbers(self, acct: Account) -> dict[str, float]:
        """The account's balances and margin figures, keyed by IB's tag names."""
        by_type: dict[str, float] = {}
        gross = 0.0
        for pos in acct.positions.values():
            mv = self.market_value(pos)
            by_type[pos.inst.sec_type] = by_type.get(pos.inst.sec_type, 0.0) + mv
            gross += abs(mv)
        net_liq = acct.cash + sum(by_type.values())
        init, maint = gross * INIT_MARGIN, gross * MAINT_MARGIN
        available, excess = net_liq - init, net_liq - maint
        daily, unrealized, realized = self.pnl(acct)
        return {
            "NetLiquidation": net_liq, "TotalCashValue": acct.cash, "SettledCash": acct.cash,
            "AccruedCash": 0.0, "BuyingPower": max(0.0, available * INTRADAY_LEVERAGE),
            "EquityWithLoanValue": net_liq, "PreviousDayEquityWithLoanValue": acct.prev_day_equity,
            "GrossPositionValue": gross, "RegTEquity": net_liq, "RegTMargin": gross * REG_T_MARGIN,
            "SMA": max(0.0, net_liq - gross * REG_T_MARGIN), "InitMarginReq": init,
            "MaintMarginReq": maint, "AvailableFunds": available, "ExcessLiquidity": excess,
            "Cushion": excess / net_liq if net_liq else 0.0,
            "Leverage": gross / net_liq if net_liq else 0.0,
            "StockMarketValue": by_type.get("STK", 0.0),
            "OptionMarketValue": by_type.get("OPT", 0.0),
            "FutureMarketValue": by_type.get("FUT", 0.0),
            "UnrealizedPnL": unrealized, "RealizedPnL": realized, "DailyPnL": daily,
        }

    def summary_rows(self, acct: Account, tags: list[str]) -> list[Row]:
        """reqAccountSummary's answer for one account: one row per known requested tag, in the
        order asked; $LEDGER[:CCY|:ALL] expands to the cash-balance tags."""
        n = self.numbers(acct)
        rows: list[Row] = []
        for tag in tags:
            if tag.startswith("$LEDGER"):
                _, _, which = tag.partition(":")
                currencies = {"": [BASE_CURRENCY], "ALL": ["BASE", BASE_CURRENCY]}.get(
                    which.upper(), [which.upper()])
                for ccy in currencies:
                    if ccy in ("BASE", BASE_CURRENCY):
                        rows.extend(self._ledger(acct, n, ccy))
            elif tag in SUMMARY_TAGS:
                rows.append(self._summary_row(acct, n, tag))
        return rows

    def _summary_row(self, acct: Account, n: dict[str, float], tag: str) -> Row:
        base = tag.removeprefix("Full").removeprefix("LookAhead")
        special = {"AccountType": "INDIVIDUAL", "LookAheadNextChange": "0",
                   "HighestSeverity": "0", "DayTradesRemaining": "-1"}
        if tag in special:
            return tag, special[tag], ""
        if tag in ("Cushion", "Leverage"):
            return tag, f"{n[tag]:.6f}", ""
        return tag, money(n[base]), BASE_CURRENCY

    def _ledger(self, acct: Account, n: dict[str, float], ccy: str) -> list[Row]:
        values = {
            "Currency": ccy, "CashBalance": money(acct.cash),
            "TotalCashBalance": money(acct.cash), "AccruedCash": money(0.0),
            "StockMarketValue": money(n["StockMarketValue"]),
            "OptionMarketValue": money(n["OptionMarketValue"]),
            "FutureOptionValue": money(0.0), "FuturesPNL": money(0.0),
            "NetLiquidationByCurrency": money(n["NetLiquidation"]),
            "UnrealizedPnL": money(n["UnrealizedPnL"]), "RealizedPnL": money(n["RealizedPnL"]),
            "ExchangeRate": "1.00", "NetDividend": money(0.0), "AccountOrGroup": acct.code,
            "RealCurrency": ccy,
        }
        return [(tag, values[tag], ccy) for tag in LEDGER_TAGS]

    def account_values(self, acct: Account) -> list[Row]:
        """What reqAccountUpdates streams as updateAccountValue: identity, the summary tags,
        and the ledger in BASE and the base currency."""
        n = self.numbers(acct)
        rows: list[Row] = [("AccountCode", acct.code, ""), ("AccountReady", "true", "")]
        for tag in SUMMARY_TAGS:
            tag_, value, ccy = self._summary_row(acct, n, tag)
            rows.append(("Leverage-S" if tag_ == "Leverage" else tag_, value, ccy))
        for ccy in ("BASE", BASE_CURRENCY):
            rows.extend(self._ledger(acct, n, ccy))
        return rows

    # ---- fills ---------------------------------------------------------------------------

    def apply_fill(
        self, account: str, instrument: Instrument, side: str, qty: float | Decimal,
        price: float, commission: float = 0.0,
    ) -> Position:
        """Book an execution: position, average cost, cash and realized PnL, then tell the
        listeners. ``side`` is BUY/BOT or SELL/SLD/SSHORT; ``qty`` is positive."""
        acct = self.get(account)
        if acct is None:
            raise KeyError(f"unknown account {account!r}")
        size = abs(float(qty))
        delta = size if side.upper() in ("BUY", "BOT") else -size
        price, commission = float(price), float(commission)
        mult = multiplier(instrument)
        cost = price * mult
        pos = acct.positions.get(instrument.con_id)
        if pos is None:
            pos = acct.positions[instrument.con_id] = Position(instrument, 0.0, 0.0)
        old = pos.qty
        new = old + delta
        if old == 0 or (old > 0) == (delta > 0):
            # Opening or adding: the commission becomes part of the cost basis, as at IB.
            pos.avg_cost = (old * pos.avg_cost + delta * cost + commission) / new
        else:
            closed = min(abs(delta), abs(old))
            sign = 1.0 if old > 0 else -1.0
            pos.realized += (cost - pos.avg_cost) * closed * sign - commission
            if abs(delta) > abs(old):
                pos.avg_cost = cost  # flipped: the remainder opens at the fill price
            elif new == 0:
                pos.avg_cost = 0.0
        pos.qty = new
        pos.day_cost += delta * cost
        pos.day_commission += commission
        acct.cash -= delta * cost + commission
        for listener in list(self.on_change):
            listener(acct, pos)
        return pos


def money(value: float) -> str:
    return f"{value:.2f}"
