"""The browser UI: static pages and the routes that serve them."""
