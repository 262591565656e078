/**
 * The programs a POSIX shell command line runs: the first word of every simple command, including
 * those inside `$( )`, pipelines, `&&`/`||` lists and if/for/while bodies. It covers the shell
 * grammar the verify checks use and throws on anything else (backquotes, `case`, arithmetic,
 * unbalanced quotes, a command name that is itself an expansion), so a check written in a form
 * it cannot read fails a test instead of slipping through it.
 */
export function commandNames(line: string): string[] {
  const names: string[] = [];
  let expectCommand = true;
  let skipNextWord = false;
  let inForHeader = false;
  for (const token of lex(line)) {
    if (token.type === 'word') for (const sub of token.substitutions) names.push(...commandNames(sub));
    if (token.type === 'redirect') {
      skipNextWord = !token.hasTarget;
      continue;
    }
    if (token.type === 'op') {
      expectCommand = true;
      continue;
    }
    if (skipNextWord) {
      skipNextWord = false;
      continue;
    }
    if (inForHeader) {
      // `for NAME in WORDS; do`: nothing before `do` is a command.
      if (token.text === 'do' && token.plain) {
        inForHeader = false;
        expectCommand = true;
      }
      continue;
    }
    if (!expectCommand) continue;
    if (token.plain && OPENING_WORDS.has(token.text)) continue;
    if (token.plain && CLOSING_WORDS.has(token.text)) {
      expectCommand = false;
      continue;
    }
    if (token.plain && token.text === 'for') {
      inForHeader = true;
      continue;
    }
    if (token.plain && UNSUPPORTED_WORDS.has(token.text)) throw new Error(`commandNames: '${token.text}' is not supported (in ${line})`);
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(token.raw)) continue;
    if (token.raw.includes('$')) throw new Error(`commandNames: the command name ${token.raw} is an expansion (in ${line})`);
    names.push(token.text);
    expectCommand = false;
  }
  return names;
}

/** Reserved words after which a command follows. */
const OPENING_WORDS = new Set(['if', 'then', 'elif', 'else', 'while', 'until', 'do', '!', '{']);
/** Reserved words that end a compound command; an operator follows. */
const CLOSING_WORDS = new Set(['fi', 'done', '}']);
const UNSUPPORTED_WORDS = new Set(['case', 'esac', 'function', 'select']);

type Token =
  | { type: 'word'; raw: string; text: string; plain: boolean; substitutions: string[] }
  | { type: 'op'; text: string }
  | { type: 'redirect'; text: string; hasTarget: boolean };

function lex(line: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const ch = line[i] as string;
    if (ch === ' ' || ch === '\t') {
      i += 1;
    } else if (ch === '\n' || ch === ';' || ch === '(' || ch === ')') {
      tokens.push({ type: 'op', text: ch });
      i += 1;
    } else if (ch === '&' || ch === '|') {
      const double = line[i + 1] === ch;
      tokens.push({ type: 'op', text: double ? ch + ch : ch });
      i += double ? 2 : 1;
    } else if (ch === '#') {
      while (i < line.length && line[i] !== '\n') i += 1;
    } else {
      const redirect = /^[0-9]*(?:[<>]&(-|[0-9]+)|>>|>|<)/.exec(line.slice(i));
      if (redirect !== null) {
        // `2>&1` carries its target; `>/dev/null` and `> file` take the next word.
        tokens.push({ type: 'redirect', text: redirect[0], hasTarget: redirect[1] !== undefined });
        i += redirect[0].length;
        continue;
      }
      const word = readWord(line, i);
      tokens.push({ type: 'word', ...word.token });
      i = word.end;
    }
  }
  return tokens;
}

function readWord(line: string, start: number): { token: Omit<Extract<Token, { type: 'word' }>, 'type'>; end: number } {
  let i = start;
  let text = '';
  let plain = true;
  const substitutions: string[] = [];
  const dollar = (): void => {
    if (line.startsWith('$((', i)) throw new Error(`commandNames: arithmetic expansion is not supported (in ${line})`);
    if (line[i + 1] === '(') {
      const end = closingParen(line, i + 2);
      substitutions.push(line.slice(i + 2, end));
      text += line.slice(i, end + 1);
      i = end + 1;
    } else if (line[i + 1] === '{') {
      const end = line.indexOf('}', i);
      if (end < 0) throw new Error(`commandNames: unclosed \${ (in ${line})`);
      text += line.slice(i, end + 1);
      i = end + 1;
    } else {
      text += '$';
      i += 1;
    }
  };
  while (i < line.length && !/[\s;&|()<>]/.test(line[i] as string)) {
    const ch = line[i] as string;
    if (ch === '`') throw new Error(`commandNames: backquotes are not supported (in ${line})`);
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`commandNames: unbalanced ' (in ${line})`);
      text += line.slice(i + 1, end);
      plain = false;
      i = end + 1;
    } else if (ch === '"') {
      plain = false;
      i += 1;
      while (line[i] !== '"') {
        if (i >= line.length) throw new Error(`commandNames: unbalanced " (in ${line})`);
        if (line[i] === '`') throw new Error(`commandNames: backquotes are not supported (in ${line})`);
        if (line[i] === '\\') {
          text += line[i + 1] ?? '';
          i += 2;
        } else if (line[i] === '$') {
          dollar();
        } else {
          text += line[i];
          i += 1;
        }
      }
      i += 1;
    } else if (ch === '\\') {
      text += line[i + 1] ?? '';
      plain = false;
      i += 2;
    } else if (ch === '$') {
      dollar();
    } else {
      text += ch;
      i += 1;
    }
  }
  return { token: { raw: line.slice(start, i), text, plain, substitutions }, end: i };
}

/** Index of the `)` that closes a `$(` whose body starts at `start`, skipping quotes and nested parentheses. */
function closingParen(line: string, start: number): number {
  let depth = 1;
  let i = start;
  while (i < line.length) {
    const ch = line[i] as string;
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) break;
      i = end + 1;
      continue;
    }
    if (ch === '"') {
      i += 1;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') i += 1;
        else if (line[i] === '$' && line[i + 1] === '(') i = closingParen(line, i + 2);
        i += 1;
      }
      i += 1;
      continue;
    }
    if (ch === '\\') {
      i += 2;
      continue;
    }
    if (ch === '(') depth += 1;
    if (ch === ')') {
      depth -= 1;
      if (depth === 0) return i;
    }
    i += 1;
  }
  throw new Error(`commandNames: unbalanced $( (in ${line})`);
}
