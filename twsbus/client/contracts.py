"""Contract and order helpers in IB's vocabulary, and what a caller's contract argument means.

``stock``, ``future``, ``option`` and ``forex`` build ``twsbus.messages.Contract`` specs with IB's
field names, so IB's documentation describes them; the daemon resolves a spec to one conId. The
order helpers return plain dicts with the fields of IB's ``Order`` (``action``, ``totalQuantity``,
``orderType``, ``lmtPrice``, ``auxPrice``, ``tif``), which is what ``tws.req.place_order`` takes.
``to_contract`` is the one place that decides what a bare ``"AAPL"``, ``265598`` or dict means.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from twsbus.messages import Contract

#: What the client accepts wherever a contract is expected: a Contract, a dict of IB's Contract
#: fields, a conId (int, or a string of digits), a JSON object as text, or a US stock symbol.
ContractLike: TypeAlias = Contract | dict[str, Any] | int | str

_ACTIONS = ("BUY", "SELL", "SSHORT")
_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


def stock(symbol: str, exchange: str = "SMART", currency: str = "USD", *,
          primaryExchange: str = "") -> Contract:
    """A stock (secType STK), by default a US stock routed SMART."""
    return Contract(symbol=symbol.upper(), secType="STK", exchange=exchange, currency=currency,
                    primaryExchange=primaryExchange)


def future(symbol: str, lastTradeDateOrContractMonth: str, exchange: str = "CME",
           currency: str = "USD", *, multiplier: str = "", localSymbol: str = "") -> Contract:
    """A future (secType FUT): ``future("ES", "202612", exchange="CME")``."""
    return Contract(symbol=symbol.upper(), secType="FUT",
                    lastTradeDateOrContractMonth=lastTradeDateOrContractMonth, exchange=exchange,
                    currency=currency, multiplier=multiplier, localSymbol=localSymbol)


def option(symbol: str, lastTradeDateOrContractMonth: str, strike: float, right: str,
           exchange: str = "SMART", currency: str = "USD", *, multiplier: str = "",
           tradingClass: str = "") -> Contract:
    """An option (secType OPT): ``option("AAPL", "20261218", 190, "C")``; right C/P/CALL/PUT."""
    code = _RIGHTS.get(right.upper())
    if code is None:
        raise ValueError(f"option right must be C or P (or CALL/PUT), not {right!r}")
    return Contract(symbol=symbol.upper(), secType="OPT",
                    lastTradeDateOrContractMonth=lastTradeDateOrContractMonth,
                    strike=float(strike), right=code, exchange=exchange, currency=currency,
                    multiplier=multiplier, tradingClass=tradingClass)


def forex(pair: str, exchange: str = "IDEALPRO") -> Contract:
    """A currency pair (secType CASH): ``forex("EURUSD")`` is symbol EUR, currency USD."""
    letters = "".join(ch for ch in pair.upper() if ch.isalpha())
    if len(letters) != 6:
        raise ValueError(f"a forex pair is six letters like EURUSD or EUR.USD, not {pair!r}")
    return Contract(symbol=letters[:3], secType="CASH", currency=letters[3:], exchange=exchange)


def to_contract(value: ContractLike) -> Contract:
    """What a caller's contract argument means: see ``ContractLike``."""
    if isinstance(value, Contract):
        return value
    if isinstance(value, bool):
        raise TypeError("a contract cannot be a bool")
    if isinstance(value, int):
        return Contract(conId=value)
    if isinstance(value, dict):
        return _convert(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return Contract(conId=int(text))
        if text.startswith("{"):
            try:
                raw = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                raise ValueError(f"contract JSON does not parse: {exc}") from None
            return _convert(raw)
        if not text:
            raise ValueError("an empty string is not a contract")
        return stock(text)
    raise TypeError(f"not a contract: {value!r} (give a Contract, dict, conId or symbol)")


def _convert(raw: Any) -> Contract:
    try:
        return msgspec.convert(raw, Contract)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a contract: {exc}") from None


# ---- orders ---------------------------------------------------------------------------------


def _order(action: str, quantity: float, order_type: str, tif: str,
           extra: dict[str, Any]) -> dict[str, Any]:
    side = action.upper()
    if side not in _ACTIONS:
        raise ValueError(f"order action must be one of {', '.join(_ACTIONS)}, not {action!r}")
    if quantity <= 0:
        raise ValueError(f"order quantity must be positive, not {quantity!r}")
    return {"action": side, "totalQuantity": quantity, "orderType": order_type, "tif": tif,
            **extra}


def market_order(action: str, quantity: float, *, tif: str = "DAY",
                 **fields: Any) -> dict[str, Any]:
    """A market order (orderType MKT); more of IB's Order fields may be given by name."""
    return _order(action, quantity, "MKT", tif, fields)


def limit_order(action: str, quantity: float, lmtPrice: float, *, tif: str = "DAY",
                **fields: Any) -> dict[str, Any]:
    """A limit order (orderType LMT) at ``lmtPrice``."""
    return _order(action, quantity, "LMT", tif, {"lmtPrice": lmtPrice, **fields})


def stop_order(action: str, quantity: float, auxPrice: float, *, tif: str = "DAY",
               **fields: Any) -> dict[str, Any]:
    """A stop order (orderType STP) triggered at ``auxPrice`` (IB's name for the stop price)."""
    return _order(action, quantity, "STP", tif, {"auxPrice": auxPrice, **fields})


def stop_limit_order(action: str, quantity: float, lmtPrice: float, auxPrice: float, *,
                     tif: str = "DAY", **fields: Any) -> dict[str, Any]:
    """A stop-limit order (orderType STP LMT): a limit at ``lmtPrice`` once ``auxPrice`` trades."""
    return _order(action, quantity, "STP LMT", tif,
                  {"lmtPrice": lmtPrice, "auxPrice": auxPrice, **fields})
