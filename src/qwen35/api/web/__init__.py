"""qwen35.api.web"""
