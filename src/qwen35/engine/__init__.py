"""qwen35.engine"""
