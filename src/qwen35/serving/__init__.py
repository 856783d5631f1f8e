"""qwen35.serving"""
