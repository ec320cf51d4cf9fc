"""One worker per model: the queue and batching in front of it (`worker`), the requests in flight
(`job`), and the real-time admission that decides when one more row may join (`realtime`)."""

from .job import Job, JobCancelled, JobPreempted, JobResult
from .worker import EngineUnavailableError, QueueFullError, Scheduler, SchedulerStats

__all__ = ["EngineUnavailableError", "Job", "JobCancelled", "JobPreempted", "JobResult", "QueueFullError", "Scheduler",
           "SchedulerStats"]
