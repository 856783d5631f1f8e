"""qwen35.api.anthropic"""
