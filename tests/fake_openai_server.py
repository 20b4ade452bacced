"""A fake OpenAI-compatible HTTP server on 127.0.0.1 for tests (fixture ``fake_openai``). To be written."""
