"""One typed async method per query op of subjects.yaml (``tws.req.<op>``), written out.

Each method takes IB's parameter names; required ones are positional, optional ones keyword-only
and ``None`` by default, and ``None`` is never sent, so the daemon applies the defaults written in
subjects.yaml. Replies are IB's objects as JSON (dicts, or lists of dicts for list queries).
``tests/client/test_queries.py`` fails when an op of subjects.yaml has no method here or when a
method's parameters stop matching the op's arguments. ``positions`` and ``positions_multi`` are
defined on the Client: each is both the query (awaited) and the subscription kind of that name
(iterated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twsbus.client.contracts import ContractLike
from twsbus.errors import NotFound
from twsbus.messages import ExecFilter, OrderCancel, TagValue
from twsbus.orders.model import Order

if TYPE_CHECKING:
    from twsbus.subjects import Surface

Obj = dict[str, Any]
Rows = list[dict[str, Any]]
Tags = list[TagValue] | dict[str, str]
Filter = ExecFilter | dict[str, Any]
Cancel = OrderCancel | dict[str, Any]


def unknown_query(surface: Surface, op: str) -> NotFound:
    """The 404 for an op subjects.yaml does not have, naming the ones it has. ``request`` raises
    it before sending anything: NATS itself would only answer "no responders", which reads as
    "no daemon" (and ``nats-py`` reports it as ``NoRespondersError``)."""
    return NotFound(f"unknown query {op!r}; the queries are {', '.join(surface.queries)}")


def _args(scope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scope.items() if k != "self" and v is not None}


class QueryMethods:
    async def request(self, op: str, /, **args: Any) -> Any:
        raise NotImplementedError

    # ---- single reply ---------------------------------------------------------------------

    async def current_time(self, *, timeout: float | None = None) -> Obj:
        """reqCurrentTime: ``{"time": <epoch seconds>}``."""
        return await self.request("current_time", **_args(locals()))

    async def current_time_in_millis(self, *, timeout: float | None = None) -> Obj:
        """reqCurrentTimeInMillis (server version 197+): ``{"timeInMillis": ...}``."""
        return await self.request("current_time_in_millis", **_args(locals()))

    async def managed_accounts(self, *, timeout: float | None = None) -> Obj:
        """reqManagedAccts: ``{"accountsList": "DU1,DU2"}``."""
        return await self.request("managed_accounts", **_args(locals()))

    async def market_rule(self, marketRuleId: int, *, timeout: float | None = None) -> Obj:
        """reqMarketRule: the price increments of a market rule."""
        return await self.request("market_rule", **_args(locals()))

    async def head_timestamp(self, contract: ContractLike, *, whatToShow: str | None = None,
                             useRTH: int | None = None, formatDate: int | None = None,
                             cache: bool | None = None, timeout: float | None = None) -> Obj:
        """reqHeadTimeStamp: the earliest data available (``cache=False``: ask TWS even when
        the daemon's cache has the answer)."""
        return await self.request("head_timestamp", **_args(locals()))

    async def news_article(self, providerCode: str, articleId: str, *,
                           newsArticleOptions: Tags | None = None,
                           timeout: float | None = None) -> Obj:
        """reqNewsArticle."""
        return await self.request("news_article", **_args(locals()))

    async def fundamental_data(self, contract: ContractLike, *, reportType: str | None = None,
                               fundamentalDataOptions: Tags | None = None,
                               timeout: float | None = None) -> Obj:
        """reqFundamentalData: ``{"data": "<xml>"}``."""
        return await self.request("fundamental_data", **_args(locals()))

    async def scanner_parameters(self, *, timeout: float | None = None) -> Obj:
        """reqScannerParameters: ``{"xml": ...}``."""
        return await self.request("scanner_parameters", **_args(locals()))

    async def user_info(self, *, timeout: float | None = None) -> Obj:
        """reqUserInfo (server version 172+)."""
        return await self.request("user_info", **_args(locals()))

    async def smart_components(self, bboExchange: str, *, timeout: float | None = None) -> Rows:
        """reqSmartComponents: the exchanges behind a bboExchange code."""
        return await self.request("smart_components", **_args(locals()))

    async def family_codes(self, *, timeout: float | None = None) -> Rows:
        """reqFamilyCodes."""
        return await self.request("family_codes", **_args(locals()))

    async def news_providers(self, *, timeout: float | None = None) -> Rows:
        """reqNewsProviders."""
        return await self.request("news_providers", **_args(locals()))

    async def mkt_depth_exchanges(self, *, timeout: float | None = None) -> Rows:
        """reqMktDepthExchanges."""
        return await self.request("mkt_depth_exchanges", **_args(locals()))

    async def soft_dollar_tiers(self, *, timeout: float | None = None) -> Rows:
        """reqSoftDollarTiers."""
        return await self.request("soft_dollar_tiers", **_args(locals()))

    async def matching_symbols(self, pattern: str, *, timeout: float | None = None) -> Rows:
        """reqMatchingSymbols: contract descriptions matching a pattern."""
        return await self.request("matching_symbols", **_args(locals()))

    async def histogram_data(self, contract: ContractLike, *, useRTH: bool | None = None,
                             timePeriod: str | None = None, timeout: float | None = None) -> Rows:
        """reqHistogramData: price/size items."""
        return await self.request("histogram_data", **_args(locals()))

    # ---- lists ----------------------------------------------------------------------------

    async def contract_details(self, contract: ContractLike, *, cache: bool | None = None,
                               timeout: float | None = None) -> Rows:
        """reqContractDetails: every contract matching the spec (kept by the daemon for an hour
        by default; ``cache=False`` asks TWS anyway)."""
        return await self.request("contract_details", **_args(locals()))

    async def sec_def_opt_params(self, underlyingSymbol: str, underlyingConId: int, *,
                                 futFopExchange: str | None = None,
                                 underlyingSecType: str | None = None,
                                 cache: bool | None = None, timeout: float | None = None) -> Rows:
        """reqSecDefOptParams: option chains (expirations, strikes) per exchange (``cache`` as
        for ``contract_details``)."""
        return await self.request("sec_def_opt_params", **_args(locals()))

    async def historical_data(self, contract: ContractLike, *, endDateTime: str | None = None,
                              durationStr: str | None = None, barSizeSetting: str | None = None,
                              whatToShow: str | None = None, useRTH: int | None = None,
                              formatDate: int | None = None, keepUpToDate: bool | None = None,
                              chartOptions: Tags | None = None, cache: bool | None = None,
                              timeout: float | None = None) -> Rows:
        """reqHistoricalData: bars (``hist_bars`` is the subscription that keeps them up to
        date). A series wholly in the past is served from the daemon's cache when it has it
        (``cache=False`` asks TWS anyway)."""
        return await self.request("historical_data", **_args(locals()))

    async def historical_ticks(self, contract: ContractLike, *,
                               startDateTime: str | None = None, endDateTime: str | None = None,
                               numberOfTicks: int | None = None, whatToShow: str | None = None,
                               useRth: int | None = None, ignoreSize: bool | None = None,
                               miscOptions: Tags | None = None, cache: bool | None = None,
                               timeout: float | None = None) -> Rows:
        """reqHistoricalTicks (``cache`` as for ``historical_data``)."""
        return await self.request("historical_ticks", **_args(locals()))

    async def account_summary(self, *, groupName: str | None = None, tags: str | None = None,
                              timeout: float | None = None) -> Rows:
        """reqAccountSummary: tag/value/currency rows per account."""
        return await self.request("account_summary", **_args(locals()))

    async def account_updates(self, *, subscribe: bool | None = None, acctCode: str | None = None,
                              timeout: float | None = None) -> Rows:
        """reqAccountUpdates, once: values, portfolio and time (``account`` streams them)."""
        return await self.request("account_updates", **_args(locals()))

    async def open_orders(self, *, timeout: float | None = None) -> Rows:
        """reqOpenOrders."""
        return await self.request("open_orders", **_args(locals()))

    async def all_open_orders(self, *, timeout: float | None = None) -> Rows:
        """reqAllOpenOrders."""
        return await self.request("all_open_orders", **_args(locals()))

    async def completed_orders(self, *, apiOnly: bool | None = None,
                               timeout: float | None = None) -> Rows:
        """reqCompletedOrders."""
        return await self.request("completed_orders", **_args(locals()))

    async def executions(self, *, execFilter: Filter | None = None,
                         timeout: float | None = None) -> Rows:
        """reqExecutions: executions and their commission reports."""
        return await self.request("executions", **_args(locals()))

    async def historical_news(self, conId: int, providerCodes: str, *,
                              startDateTime: str | None = None, endDateTime: str | None = None,
                              totalResults: int | None = None,
                              historicalNewsOptions: Tags | None = None,
                              timeout: float | None = None) -> Rows:
        """reqHistoricalNews: headlines."""
        return await self.request("historical_news", **_args(locals()))

    # ---- snapshot, fire and forget, orders ---------------------------------------------------

    async def market_data_snapshot(self, contract: ContractLike, *,
                                   genericTickList: str | None = None,
                                   snapshot: bool | None = None,
                                   regulatorySnapshot: bool | None = None,
                                   mktDataOptions: Tags | None = None,
                                   timeout: float | None = None) -> Obj:
        """reqMktData(snapshot=True): the ticks folded into one object by IB tick name."""
        return await self.request("market_data_snapshot", **_args(locals()))

    async def market_data_type(self, marketDataType: int, *,
                               timeout: float | None = None) -> Obj:
        """reqMarketDataType (1 live, 2 frozen, 3 delayed, 4 delayed frozen): ``{"ok": true}``."""
        return await self.request("market_data_type", **_args(locals()))

    async def global_cancel(self, *, orderCancel: Cancel | None = None,
                            timeout: float | None = None) -> Obj:
        """reqGlobalCancel: cancel every open order."""
        return await self.request("global_cancel", **_args(locals()))

    async def place_order(self, contract: ContractLike, order: Order | dict[str, Any], *,
                          clientOrderId: str | None = None, strategy: str | None = None,
                          modify: bool | None = None, timeout: float | None = None) -> Obj:
        """The raw ``place_order`` request, sent once: the daemon's ``PlaceReply`` as a dict
        (``clientOrderId``, ``orderId``, ``permId``, ``status``, ``duplicate``...).
        ``bus.place`` is the same with a handle and retries; ``modify=True`` with a known
        ``clientOrderId`` modifies that order."""
        return await self.request("place_order", **_args(locals()))

    async def cancel_order(self, *, clientOrderId: str | None = None,
                           orderId: int | None = None, orderCancel: Cancel | None = None,
                           timeout: float | None = None) -> Obj:
        """The raw ``cancel_order`` request, by ``clientOrderId`` or ``orderId``: the order's
        ``PlaceReply`` once final (409 when it was final already, 404 when unknown)."""
        return await self.request("cancel_order", **_args(locals()))
