"""qwen35.platform"""
