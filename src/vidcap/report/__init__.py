"""``vidcap report``: one self-contained HTML page to look at captions beside their frames.

``fields`` names every record field the report reads; ``source`` reads output files and their
summaries; ``thumbs`` decodes the planned frames as small JPEGs (in decode worker processes);
``charts`` draws the inline SVG plots; ``page`` writes the HTML; ``build`` strings them together.
"""
