"""qwen35.api"""
