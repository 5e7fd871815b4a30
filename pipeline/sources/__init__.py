"""Where frames come from: files, image folders, webcams and streams (`Frame` records out)."""
