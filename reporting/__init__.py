"""What a run shows: the visualizer and its sinks (loss_log.txt, losses.jsonl, the training page, visdom,
TensorBoard, W&B), the plots, the HTML pages and their assets, progress lines."""
