"""SQL storage backend (SQLAlchemy 2): sqlite:// and postgresql:// URLs."""
