"""qwen35.processor"""
