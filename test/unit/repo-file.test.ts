import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRepoDir, readRepoFile, walkRepoFiles } from '../../src/repo-file.js';

const repo = () => mkdtempSync(path.join(tmpdir(), 'gitgate-repo-file-'));
const limits = { maxFiles: 3, maxBytes: 100 };

describe('files of a repo someone else writes: regular files only, bounded', () => {
  it('reads a regular file within its bound, refuses one past it before reading', () => {
    const d = repo();
    writeFileSync(path.join(d, 'a'), 'hello');
    expect(readRepoFile(path.join(d, 'a'), 5, 'a').toString()).toBe('hello');
    expect(() => readRepoFile(path.join(d, 'a'), 4, 'a')).toThrow('a: is 5 bytes, more than the 4 allowed');
    expect(() => readRepoFile(path.join(d, 'missing'), 4, 'missing')).toThrow(/missing: cannot be read \(ENOENT\)/);
  });

  it('never follows a symbolic link, opens a FIFO without waiting on it, and reads no device', () => {
    const d = repo();
    symlinkSync('/dev/zero', path.join(d, 'zero'));
    expect(() => readRepoFile(path.join(d, 'zero'), 1 << 20, 'zero')).toThrow(
      'zero: is a symbolic link: only regular files are read from this repo',
    );
    execFileSync('mkfifo', [path.join(d, 'fifo')]);
    expect(() => readRepoFile(path.join(d, 'fifo'), 1 << 20, 'fifo')).toThrow('fifo: is a FIFO');
    expect(() => readRepoFile('/dev/zero', 1 << 20, 'dev')).toThrow('dev: is a device');
  });

  it('walks a folder: sorted relative paths; a link anywhere (a skipped name too), too many files or bytes: refused', () => {
    const d = repo();
    mkdirSync(path.join(d, 'x', 'y'), { recursive: true });
    writeFileSync(path.join(d, 'b'), '1');
    writeFileSync(path.join(d, 'x', 'y', 'a'), '2');
    writeFileSync(path.join(d, '.hidden'), '3');
    const skip = (name: string) => name.startsWith('.');
    expect(walkRepoFiles(d, { ...limits, skip }, 'p')).toEqual(['b', 'x/y/a']);
    symlinkSync('/etc', path.join(d, 'x', '.link'));
    expect(() => walkRepoFiles(d, { ...limits, skip }, 'p')).toThrow('p/x/.link: is a symbolic link');
    const hidden = repo();
    mkdirSync(path.join(hidden, '.cache', 'deep'), { recursive: true });
    symlinkSync('/dev/zero', path.join(hidden, '.cache', 'deep', 'zero'));
    expect(() => walkRepoFiles(hidden, { ...limits, skip }, 'p')).toThrow('p/.cache/deep/zero: is a symbolic link');
    const many = repo();
    for (const n of ['1', '2', '3', '4']) writeFileSync(path.join(many, n), '');
    expect(() => walkRepoFiles(many, limits, 'p')).toThrow('p: holds more than 3 files');
    const big = repo();
    writeFileSync(path.join(big, 'f'), 'x'.repeat(101));
    expect(() => walkRepoFiles(big, limits, 'p')).toThrow('p: holds more than 100 bytes');
  });

  it('a folder that is a symbolic link is refused; one that is missing is not there', () => {
    const d = repo();
    symlinkSync('/', path.join(d, 'policies'));
    expect(() => isRepoDir(path.join(d, 'policies'), 'policies')).toThrow('policies: is a symbolic link');
    expect(isRepoDir(path.join(d, 'nothing'))).toBe(false);
    mkdirSync(path.join(d, 'real'));
    expect(isRepoDir(path.join(d, 'real'))).toBe(true);
  });
});
