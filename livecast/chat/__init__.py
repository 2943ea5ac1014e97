"""Live chat: comments, likes, gifts, presence and moderation over a WebSocket per room."""
