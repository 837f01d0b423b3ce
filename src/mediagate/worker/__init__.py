"""The processing worker: consumes bucket events and jobs from RabbitMQ, runs the pipeline."""
