// The same client as tts-integration.js, as an ES module:
//   import KyutaiTTS, { speak, stop, configure } from './tts-integration.mjs';
import './tts-integration.js';

const api = globalThis.KyutaiTTS;
export const { TTSClient, TTS_CONFIG, features, configure, speak, speakStream, stop, unlock, on, off,
  parseWavHeader, pickVoice } = api;
export default api;
