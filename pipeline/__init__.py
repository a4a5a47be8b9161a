"""rillet: an asyncio stream-processing pipeline for Claude's streaming Messages API."""
