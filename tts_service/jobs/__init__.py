"""Long texts made into one audio file in the background: a store on disk, a runner, the joined file."""
