"""(filled in by the owning issue)"""
