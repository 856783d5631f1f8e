"""qwen35.api.openai"""
