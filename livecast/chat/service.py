"""Chat rules: who may post what, in which order things are stored and published.

Every room event is stored first (comments, gifts; likes in batches), then published
once on the bus, serialised once; hubs deliver it. Refusals are typed errors
(``LivecastError`` with a stable ``code``) that the WebSocket and HTTP edges turn into
error frames or JSON errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from livecast.chat.admission import Refusal, admit
from livecast.chat.bus.base import ChatBus, RoomMessage
from livecast.chat.bus.memory import InProcessBus
from livecast.chat.coalesce import Coalescer
from livecast.chat.frames import GIFT_QUANTITY_MAX, clean_comment, encode, error_frame, user_json
from livecast.chat.hub import ChatClient, ChatHub
from livecast.chat.likes import PendingLikes
from livecast.chat.retention import CommentPruner
from livecast.chat.store import ChatRoomSettings, ChatStore
from livecast.config import Gift, Settings
from livecast.core.errors import Forbidden, RateLimited, Unauthorized, ValidationError
from livecast.core.events import CommentCreated, GiftSent
from livecast.core.ratelimit import RateLimiter
from livecast.rooms import RoomService
from livecast.users import User

log = logging.getLogger(__name__)

LIKES_INTERVAL = 0.25  # at most 4 likes frames a second per room
VIEWERS_INTERVAL = 0.5  # at most 2 viewers frames a second per room
LIKE_FRAMES_PER_SECOND = 10  # per user, each frame up to 50 likes
FLUSH_INTERVAL = 1.0


@dataclass
class ChatRoom:
    """What chat needs to know about a room, cached while the process runs."""

    id: int
    slug: str
    owner_id: int
    owner_username: str
    settings: ChatRoomSettings
    likes: int
    banned: set[int]

    def managed_by(self, user: User | None) -> bool:
        return user is not None and (user.role == "admin" or user.id == self.owner_id)


class ChatService:
    def __init__(self, settings: Settings, bus: ChatBus | None = None) -> None:
        self.settings = settings
        self.chat = settings.chat
        self.gifts: dict[str, Gift] = {g.name: g for g in settings.gifts}
        self.bus: ChatBus = bus or InProcessBus()
        self.hub = ChatHub(self.bus, self._presence_changed, self.chat.abuse_block_seconds)
        self.live_of: Callable[[str], bool | None] = lambda slug: None
        self.emit: Callable[[object], None] = lambda event: None  # domain events (app[EVENTS].emit)
        self._store: ChatStore | None = None
        self._rooms_service: RoomService | None = None
        self._pending_likes: PendingLikes | None = None
        self._pruner: CommentPruner | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._rooms: dict[str, ChatRoom] = {}
        self._loading: dict[str, asyncio.Future[ChatRoom]] = {}
        self._comment_limit = RateLimiter(max(1, self.chat.rate_count), max(0.001, self.chat.rate_seconds),
                                          max_keys=100_000)
        self._like_limit = RateLimiter(LIKE_FRAMES_PER_SECOND, 1.0, max_keys=100_000)
        self._last_comment: dict[tuple[int, int], float] = {}
        self._likes = Coalescer(LIKES_INTERVAL, self._publish_likes)
        self._viewers = Coalescer(VIEWERS_INTERVAL, self._publish_viewers)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, store: ChatStore, rooms: RoomService) -> None:
        self._store = store
        self._rooms_service = rooms
        self._pending_likes = PendingLikes(store)
        await self.bus.start()
        self._pruner = CommentPruner(store, self.chat)
        self._pruning = asyncio.get_running_loop().create_task(self._pruner.run())

    @property
    def store(self) -> ChatStore:
        if self._store is None:
            raise RuntimeError("chat service is not started")
        return self._store

    async def run_flusher(self) -> None:
        """Write likes at least every second (cancelled on shutdown; ``close`` flushes)."""
        ticks = 0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush_likes()
            ticks += 1
            if ticks % 60 == 0:
                self._prune()

    async def flush_likes(self) -> None:
        if self._pending_likes is not None:
            await self._pending_likes.flush()

    async def prune_now(self) -> int:
        """One comment prune pass at once (the one the pruner runs every ``prune_interval``)."""
        return await self._pruner.prune() if self._pruner is not None else 0

    async def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
        self._likes.close()
        self._viewers.close()
        await self.flush_likes()
        await self.bus.close()

    def _prune(self) -> None:
        cutoff = time.monotonic() - 3600
        for key in [k for k, t in self._last_comment.items() if t < cutoff]:
            del self._last_comment[key]
        self._likes.prune()
        self._viewers.prune()

    # -- rooms ------------------------------------------------------------------------

    async def room(self, slug: str) -> ChatRoom:
        """The room's chat state (``RoomNotFound`` if there is no such room)."""
        cached = self._rooms.get(slug)
        if cached is not None:
            return cached
        loading = self._loading.get(slug)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[ChatRoom] = asyncio.get_running_loop().create_future()
        self._loading[slug] = future
        try:
            assert self._rooms_service is not None, "chat service is not started"
            room = await self._rooms_service.require(slug)
            state = await self.store.room_state(room.id)
            chat_room = ChatRoom(room.id, room.slug, room.owner_id, room.owner_username,
                                 state.settings, state.likes, state.banned)
            self._rooms[slug] = chat_room
            future.set_result(chat_room)
            return chat_room
        except Exception as err:
            future.set_exception(err)
            future.exception()  # mark retrieved; concurrent waiters re-raise it
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._loading[slug]

    def room_deleted(self, slug: str) -> None:
        room = self._rooms.pop(slug, None)
        if room is not None and self._pending_likes is not None:
            self._pending_likes.forget(room.id)
        self._likes.forget(slug)
        self._viewers.forget(slug)
        frame = error_frame("room_deleted", "this room has been deleted")
        self.bus.publish(slug, RoomMessage("closed", encode(frame)))

    def stream_changed(self, slug: str, live: bool) -> None:
        self.bus.publish(slug, RoomMessage("stream", encode({"type": "stream", "live": live})))

    def user_disabled(self, user_id: int) -> None:
        text = encode(error_frame("account_disabled", "this account has been disabled"))
        for client in self.hub.clients():
            if client.user_id == user_id:
                self.hub.change_user(client, None)
                self.hub.send(client, text)

    # -- connections ------------------------------------------------------------------

    def admit(self, room: ChatRoom, client: ChatClient, request: web.Request | None = None) -> Refusal | None:
        """Join the room, or why not (livecast.chat.admission: the per-address socket cap and
        ``max_viewers``; owner/admin always get in)."""
        return admit(self.hub, client, max_sockets=self.chat.max_sockets_per_address,
                     max_viewers=room.settings.max_viewers, manager=room.managed_by(client.user),
                     viewers=self.viewers(room.slug), request=request)

    async def hello(self, room: ChatRoom, client: ChatClient) -> tuple[str, int]:
        """The hello frame and the id of the newest comment in its history."""
        history = await self.store.history(room.id, self.chat.history)
        live = self.live_of(room.slug)
        frame = {
            "type": "hello",
            "room": room.slug,
            "live": bool(live),
            "viewers": self.viewers(room.slug),
            "likes": room.likes,
            "history": [c.to_json() for c in history],
            "user": user_json(client.user.username, client.user.role) if client.user else None,
            "settings": room.settings.to_json(),
        }
        return encode(frame), history[-1].id if history else 0

    def viewers(self, slug: str) -> int:
        """The room's viewers on every node of the cluster (this node's alone without a shared bus)."""
        return self.bus.viewers(slug, self.hub.viewers(slug))

    def _presence_changed(self, slug: str) -> None:
        self._viewers.mark(slug)

    def _publish_viewers(self, slug: str) -> None:
        self.bus.set_viewers(slug, self.hub.viewers(slug))

    def _publish_likes(self, slug: str) -> None:
        room = self._rooms.get(slug)
        if room is not None:
            self.bus.publish(slug, RoomMessage("likes", encode({"type": "likes", "total": room.likes})))

    # -- posting ----------------------------------------------------------------------

    def _poster(self, room: ChatRoom, user: User | None) -> User:
        if user is None:
            raise Unauthorized("log in to take part in the chat", code="login_required")
        if user.id in room.banned and not room.managed_by(user):
            raise Forbidden("you are banned from this room's chat", code="banned")
        return user

    async def post_comment(self, room: ChatRoom, user: User | None, text: str) -> None:
        """Check, store, then publish a comment (the sender sees it come back)."""
        poster = self._poster(room, user)
        content = clean_comment(text, self.chat.max_comment_chars)
        manager = room.managed_by(poster)
        key = (room.id, poster.id)
        now = time.monotonic()
        if not manager:
            if not room.settings.chat_enabled:
                raise Forbidden("chat is turned off in this room", code="chat_disabled")
            slow = room.settings.slow_mode_seconds
            last = self._last_comment.get(key)
            if slow and last is not None and now - last < slow:
                err = RateLimited(f"slow mode: one comment every {slow} s", retry_after=slow - (now - last))
                err.code = "slow_mode"
                raise err
        wait = self._comment_limit.hit(str(poster.id))
        if wait > 0:
            raise RateLimited("you are commenting too fast", retry_after=wait)
        self._last_comment[key] = now
        comment_id, ts = await self.store.add_comment(room.id, poster.id, content)
        if self._pruner is not None:
            self._pruner.commented(room.id)
        frame = {"type": "comment", "id": comment_id, "user": user_json(poster.username, poster.role),
                 "text": content, "ts": ts}
        self.bus.publish(room.slug, RoomMessage("comment", encode(frame), comment_id))
        self.hub.stats["comments"] += 1
        self.emit(CommentCreated(room.slug, comment_id, poster.username, content, ts))

    def like(self, room: ChatRoom, user: User | None, count: int) -> None:
        poster = self._poster(room, user)
        wait = self._like_limit.hit(str(poster.id))
        if wait > 0:
            raise RateLimited("you are liking too fast", retry_after=wait)
        room.likes += count
        assert self._pending_likes is not None
        self._pending_likes.add(room.id, count)
        self._likes.mark(room.slug)

    async def send_gift(self, room: ChatRoom, user: User | None, name: str,
                        quantity: int) -> tuple[dict[str, Any], int]:
        """Pay for and announce a gift; returns (gift JSON, sender's new balance)."""
        poster = self._poster(room, user)
        gift = self.gifts.get(name)
        if gift is None:
            raise ValidationError(f"no gift named {name[:32]!r}", field="gift", code="unknown_gift")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= GIFT_QUANTITY_MAX:
            raise ValidationError(f"quantity must be 1..{GIFT_QUANTITY_MAX}", field="quantity")
        if poster.id == room.owner_id:
            raise Forbidden("you cannot send gifts to your own room", code="own_room")
        value = gift.price * quantity
        gift_id, ts, balance = await self.store.send_gift(room.id, poster.id, room.owner_id, gift.name,
                                                          quantity, value)
        body = {"id": gift_id, "user": user_json(poster.username, poster.role), "gift": gift.name,
                "quantity": quantity, "value": value, "ts": ts}
        self.bus.publish(room.slug, RoomMessage("gift", encode({"type": "gift", **body})))
        self.hub.stats["gifts"] += 1
        self.emit(GiftSent(room.slug, gift_id, poster.username, gift.name, quantity, value, ts))
        return body, balance

    # -- moderation -------------------------------------------------------------------

    async def delete_comment(self, room: ChatRoom, comment_id: int) -> bool:
        if not await self.store.delete_comment(room.id, comment_id):
            return False
        self.bus.publish(room.slug, RoomMessage("deleted", encode({"type": "deleted", "id": comment_id})))
        return True

    async def ban(self, room: ChatRoom, target: User, by: User) -> bool:
        if room.managed_by(target):
            raise Forbidden("the room's owner and admins cannot be banned", code="cannot_ban")
        created = await self.store.ban(room.id, target.id, by.id)
        room.banned.add(target.id)
        return created

    async def unban(self, room: ChatRoom, target: User) -> bool:
        removed = await self.store.unban(room.id, target.id)
        room.banned.discard(target.id)
        return removed

    async def update_settings(self, room: ChatRoom, changes: dict[str, Any]) -> ChatRoomSettings:
        settings = replace(room.settings, **changes)
        await self.store.save_settings(room.id, settings)
        room.settings = settings
        self.bus.publish(room.slug, RoomMessage("settings", encode({"type": "settings", **settings.to_json()})))
        return settings
