// Which agents a team may use, as the home page's team picker applies it (draft.js); the server
// decides with services.teams.check_agent, this only keeps the picker honest. Pure.

// `teams`: an agent option's data-teams (the space-separated slugs of the user's teams that may
// use a restricted agent), undefined or null for an agent open to every team.
export function agentAllowed(teams, team) {
  if (teams === undefined || teams === null) return true;
  return teams.split(" ").filter(Boolean).includes(team);
}
