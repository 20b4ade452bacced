"""News gathering step type and news sources (RSS/Atom, web search)."""
