"""LLM providers, the durable call log and cache, rate limits and batch APIs."""
