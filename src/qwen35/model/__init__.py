"""qwen35.model"""
