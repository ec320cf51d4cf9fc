"""The speech core: one request, one resolver for language and voice, one text path, one refusal
type, and sessions that turn text into tagged events. Every protocol is an adapter over it."""

from .events import Audio, Done, Error, Event, EventQueue, Word
from .refusals import KINDS, Refusal, as_refusal
from .request import SpeechRequest
from .session import Session
from .slots import SessionSlots
from .voices import FALLBACK, STRICT, Resolved, resolve

__all__ = ["Audio", "Done", "Error", "Event", "EventQueue", "Word", "KINDS", "Refusal", "as_refusal", "Session",
           "SessionSlots", "SpeechRequest", "FALLBACK", "STRICT", "Resolved", "resolve"]
